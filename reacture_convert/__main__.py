from reacture_convert.cli import main

main()
