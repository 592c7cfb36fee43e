from relay.commands.cli import main

raise SystemExit(main())
