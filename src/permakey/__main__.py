from permakey.cli.main import main

raise SystemExit(main())
