"""The console commands. Importing this package puts the user's config folders
(``MELNAS_CONFIG_PATH``, ``nas.io.config_dirs``) on the config search path of every Hydra
app and every ``compose`` the demo and the study run; a folder that is missing or hides a
built-in config stops the command with one line, before Hydra starts."""

import sys

from nas.errors import MelnasError
from experiments.config_search_path import register_with_hydra

try:
    register_with_hydra()
except MelnasError as error:
    print(f"melnas: {error}", file=sys.stderr)
    sys.exit(2)
