from coffre.cli.main import main

raise SystemExit(main())
