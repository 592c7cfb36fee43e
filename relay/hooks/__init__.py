"""Making hook URLs (`minting`: templates, settings, labels) and the public page a hook URL shows in
a browser."""
