"""pynetdicom's internals are touched in one module only: synthpacs/dimse/_pynetdicom_compat.py.

The checks read the source with :mod:`ast`: no other module in synthpacs/
imports a private pynetdicom module or name, uses one of the private
attributes the compat module lists, or overrides a private pynetdicom
method. The compat module itself lists every private attribute it uses,
refuses other pynetdicom releases, and the names it patches still exist in
the installed release.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pynetdicom
import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.transport import RequestHandler

from synthpacs.dimse import _pynetdicom_compat as compat

PACKAGE = Path(__file__).parent.parent / "synthpacs"
COMPAT = PACKAGE / "dimse" / "_pynetdicom_compat.py"
#: (module, attribute) pairs that share a name with a pynetdicom private but are not pynetdicom's.
NOT_PYNETDICOM = {
    ("web.py", "_server"),  # the HTTP front end's own attribute, holding waitress's server
}
_ATTRIBUTE_FUNCTIONS = {"getattr", "setattr", "hasattr", "delattr"}


def _private_pynetdicom_module(name: str | None) -> bool:
    parts = (name or "").split(".")
    return parts[0] == "pynetdicom" and any(part.startswith("_") for part in parts[1:])


def violations(source: str, module: str = "<string>") -> list[str]:
    """Uses of pynetdicom's privates in one module's source, as 'module:line what'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        where = f"{module}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where} imports {alias.name}" for alias in node.names if _private_pynetdicom_module(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            if _private_pynetdicom_module(node.module):
                found.append(f"{where} imports from {node.module}")
            elif (node.module or "").split(".")[0] == "pynetdicom":
                found += [f"{where} imports {node.module}.{alias.name}" for alias in node.names if alias.name.startswith("_")]
        elif isinstance(node, ast.Attribute) and node.attr in compat.PRIVATE_NAMES:
            if (module, node.attr) not in NOT_PYNETDICOM:
                found.append(f"{where} uses .{node.attr}")
        elif isinstance(node, ast.ClassDef):
            found += [
                f"{module}:{item.lineno} overrides {node.name}.{item.name}"
                for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name in compat.PRIVATE_NAMES
            ]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _ATTRIBUTE_FUNCTIONS
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in compat.PRIVATE_NAMES
        ):
            found.append(f"{where} {node.func.id}(..., {node.args[1].value!r})")
    return found


def test_only_the_compat_module_touches_pynetdicom_privates():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != COMPAT:
            found += violations(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE)))
    assert found == [], "move these into synthpacs/dimse/_pynetdicom_compat.py:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "from pynetdicom._globals import MODE_ACCEPTOR",
        "import pynetdicom._handlers",
        "from pynetdicom import _config",
        "from pynetdicom.association import _QueueItem",
        "assoc._reactor_checkpoint.set()",
        "outgoing = assoc.dul.to_provider_queue",
        "assoc.dimse.cancel_req.pop(1, None)",
        "ae._servers.append(server)",
        "getattr(assoc, '_is_paused', False)",
        "class A(Association):\n    def _serve_request(self, msg, context_id):\n        pass",
    ],
)
def test_the_check_finds_each_kind_of_use(source):
    assert violations(source)


def test_the_check_leaves_public_names_alone():
    source = (
        "from pynetdicom import AE, evt\nfrom pynetdicom.status import code_to_category\n"
        "assoc.dimse.send_msg(rsp, 1)\nassoc.accepted_contexts\nself._listener.shutdown()\n"
    )
    assert violations(source) == []


def test_the_compat_module_lists_every_private_attribute_it_uses():
    """Each private attribute the compat module reads or writes (other than
    those of its own classes) is in PRIVATE_NAMES, so that the scan above
    covers it everywhere else."""
    tree = ast.parse(COMPAT.read_text(encoding="utf-8"))
    own: set[str] = set()
    for node in ast.walk(tree):  # attributes its own classes assign on self
        if isinstance(node, ast.ClassDef) and node.name == "ReactorCheckpoint":
            own |= {
                n.attr
                for n in ast.walk(node)
                if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self"
            }
    used = {
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
    }
    assert used - own - compat.PRIVATE_NAMES == set()


def test_other_pynetdicom_releases_are_refused():
    for version in ("3.0.0", "3.0.4", "3.0.5.dev0"):
        compat.check_version(version)
    for version in ("3.1.0", "2.1.1", "4.0.0", "unknown"):
        with pytest.raises(ImportError, match=f"pynetdicom {compat.SUPPORTED_VERSIONS}, found pynetdicom {version}"):
            compat.check_version(version)
    compat.check_version(pynetdicom.__version__)


def test_what_the_compat_module_patches_exists_in_this_release():
    """An override of a method that is gone, or a replaced attribute that
    pynetdicom no longer reads, would fail silently: check they are there."""
    assert callable(Association._serve_request)
    assert callable(RequestHandler._create_association)
    ae = AE()
    assert isinstance(ae._servers, list)
    assoc = Association(ae, "requestor")
    for name in ("_reactor_checkpoint", "_is_paused", "_kill", "_accepted_cx", "_sent_release"):
        assert hasattr(assoc, name), name
    assert hasattr(assoc.dimse, "msg_queue") and hasattr(assoc.dimse, "cancel_req")
    assert hasattr(assoc.dul, "to_provider_queue")
    compat.install_reactor_checkpoint(assoc)
    assert isinstance(assoc._reactor_checkpoint, compat.ReactorCheckpoint)
    assert compat.outgoing_backlog(assoc) == 0
