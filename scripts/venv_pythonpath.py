"""Print, colon-separated, what this venv adds to sys.path: its site-packages and the folders its .pth files name.

QGIS runs Debian's Python, which reads the venv only through PYTHONPATH, and PYTHONPATH skips .pth files;
run by the venv's Python, this gives the whole list, whatever the Python version (3.11, 3.13, ...).
"""

import site
import sys
import sysconfig

system = set(site.getsitepackages([sys.base_prefix])) | {site.getusersitepackages()}
venv_site = sysconfig.get_path("purelib")
sys.stdout.write(":".join(path for path in sys.path[sys.path.index(venv_site):] if path not in system) + "\n")
