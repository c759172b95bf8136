from attn.cli.main import main

main()
