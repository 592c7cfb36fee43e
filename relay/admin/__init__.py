"""Web pages: the admin console (`console`) and the public hook pages (`hookpage`), rendered
server-side from `templates/` (`html`), with sign-in and CSRF in `session`, the overview's chart
in `charts` and delivery replays in `replay`."""
