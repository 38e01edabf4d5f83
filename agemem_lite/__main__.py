"""``python -m agemem_lite`` runs the ``agemem`` command."""

from .cli import main

if __name__ == "__main__":
    main()
