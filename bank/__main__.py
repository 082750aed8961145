from bank.main import main

raise SystemExit(main())
