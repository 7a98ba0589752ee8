from t2ctl.cli.main import main

main()
