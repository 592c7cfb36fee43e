"""passkit-relay: Zapier/Make/Stripe webhooks in, validated PassKit REST calls out."""

__version__ = "0.1.0"
