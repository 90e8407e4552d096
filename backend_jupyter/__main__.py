from backend_jupyter.cli import main

raise SystemExit(main())
