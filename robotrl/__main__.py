from robotrl.cli import main

raise SystemExit(main())
