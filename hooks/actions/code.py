"""Which custom actions a bot's action code implements.

Two readers give the same answer in two ways:
- `read_statically` parses the code with `ast` and never imports it (light, safe);
- `read_by_import` imports the package in a separate Python process exactly as
  the action server does (rasa-sdk's `ActionExecutor.register_package`) and
  asks the executor what it registered, which also surfaces import errors.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hooks.core.errors import FatalError
from hooks.core.process import run
from hooks.core.yaml_lines import read_text

# rasa-sdk classes whose subclasses are actions; ValidationAction names itself.
SDK_ACTION_BASES = frozenset({"Action", "FormValidationAction", "ValidationAction"})
VALIDATE_SLOT_MAPPINGS = "action_validate_slot_mappings"
IMPORT_TIMEOUT_S = 300.0
RESULT_MARK = "@@rasa-gitops-actions@@"


@dataclass(frozen=True)
class Implemented:
    name: str
    path: Path
    line: int


@dataclass(frozen=True)
class CodeIssue:
    path: Path
    line: int
    message: str


@dataclass
class ActionCode:
    files: tuple[Path, ...] = ()
    actions: list[Implemented] = field(default_factory=list)
    issues: list[CodeIssue] = field(default_factory=list)

    def names(self) -> set[str]:
        return {a.name for a in self.actions}


def find_action_code(root: Path, configured: str | None = None) -> tuple[Path | None, str]:
    """(the actions package folder or module file, its import name)."""
    candidates = [root / configured] if configured else [root / "actions", root / "actions.py"]
    for candidate in candidates:
        if candidate.is_dir() or (candidate.is_file() and candidate.suffix == ".py"):
            return candidate, candidate.stem if candidate.is_file() else candidate.name
    if configured:
        raise FatalError(f"{root / configured}: no such action package or module (--actions).")
    return None, "actions"


def python_files(location: Path | None) -> tuple[Path, ...]:
    if location is None:
        return ()
    if location.is_file():
        return (location,)
    return tuple(sorted(p for p in location.rglob("*.py") if "__pycache__" not in p.parts))


# ------------------------------------------------------------------ static


@dataclass
class _Class:
    name: str
    path: Path
    line: int
    bases: tuple[str, ...]
    returned: str | None  # the literal name() returns, if it has one
    has_name_method: bool
    abstract: bool


def _base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _constants(tree: ast.Module) -> dict[str, str]:
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            found[node.target.id] = node.value.value
    return found


def _returned_literal(method: ast.FunctionDef | ast.AsyncFunctionDef,
                      constants: dict[str, str]) -> str | None:
    returns = [n for n in ast.walk(method) if isinstance(n, ast.Return)]
    if len(returns) != 1 or returns[0].value is None:
        return None
    value = returns[0].value
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return value.value
    if isinstance(value, ast.Name):
        return constants.get(value.id)
    return None


def _is_abstract(node: ast.ClassDef, bases: tuple[str, ...]) -> bool:
    if "ABC" in bases:
        return True
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
            _base_name(d) == "abstractmethod" for d in item.decorator_list
        ):
            return True
    return False


def _classes(path: Path, tree: ast.Module) -> Iterator[_Class]:
    constants = _constants(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        bases = tuple(_base_name(b) for b in node.bases)
        method = next((item for item in node.body
                       if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                       and item.name == "name"), None)
        returned = _returned_literal(method, constants) if method else None
        yield _Class(node.name, path, node.lineno, bases, returned, method is not None,
                     _is_abstract(node, bases))


def read_statically(files: Iterable[Path]) -> ActionCode:
    code = ActionCode(files=tuple(files))
    classes: dict[str, list[_Class]] = {}
    for path in code.files:
        try:
            tree = ast.parse(read_text(path), filename=str(path))
        except SyntaxError as exc:
            code.issues.append(CodeIssue(path, exc.lineno or 0,
                                         f"syntax error: {exc.msg}; no action here can be read"))
            continue
        for found in _classes(path, tree):
            classes.setdefault(found.name, []).append(found)

    def resolve(cls: _Class, seen: frozenset[str]) -> tuple[bool, str | None, bool]:
        """(is an action, its name, name could be read)."""
        if cls.has_name_method:
            is_action = any(_is_action(b, seen | {cls.name}) for b in cls.bases)
            return is_action, cls.returned, cls.returned is not None
        for base in cls.bases:
            if base in classes and base not in seen:
                is_action, name, readable = resolve(classes[base][0], seen | {cls.name})
                if is_action:
                    return True, name, readable
            if base == "ValidationAction":
                return True, VALIDATE_SLOT_MAPPINGS, True
            if base in SDK_ACTION_BASES:
                return True, None, False
        return False, None, True

    def _is_action(base: str, seen: frozenset[str]) -> bool:
        if base in SDK_ACTION_BASES:
            return True
        if base in classes and base not in seen:
            return resolve(classes[base][0], seen)[0]
        return False

    for group in classes.values():
        for cls in group:
            is_action, name, readable = resolve(cls, frozenset())
            if not is_action or cls.abstract:
                continue
            if name is not None:
                code.actions.append(Implemented(name, cls.path, cls.line))
            elif not readable or cls.has_name_method:
                code.issues.append(CodeIssue(
                    cls.path, cls.line,
                    f"cannot read the action name of class {cls.name} without running it "
                    "(name() must `return \"...\"`); run with --import to import the code",
                ))
            else:
                code.issues.append(CodeIssue(
                    cls.path, cls.line,
                    f"class {cls.name} is an action without a name() method; the action "
                    "server will fail to register it",
                ))
    code.actions.sort(key=lambda a: (str(a.path), a.line))
    return code


# ------------------------------------------------------------------ by import

# Runs in a separate interpreter: the bot's code never enters the hook process.
_IMPORT_SCRIPT = r"""
import inspect, json, logging, sys, traceback
root, package, mark = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, root)
logging.disable(logging.CRITICAL)

def where(exc):
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename.startswith(root)]
    if isinstance(exc, SyntaxError) and exc.filename:
        return exc.filename, exc.lineno or 0
    if frames:
        return frames[-1].filename, frames[-1].lineno or 0
    return "", 0

result = {"actions": [], "error": None}
try:
    from rasa_sdk.executor import ActionExecutor
except ImportError as exc:
    result["error"] = {"message": "rasa_sdk is not installed for " + sys.executable
                       + ": " + str(exc), "path": "", "line": 0}
else:
    executor = ActionExecutor()
    try:
        executor.register_package(package)
    except BaseException as exc:
        cause = exc.__context__ if isinstance(exc, SystemExit) and exc.__context__ else exc
        path, line = where(cause)
        result["error"] = {"message": type(cause).__name__ + ": " + str(cause),
                           "path": path, "line": line}
    for name, function in executor.actions.items():
        owner = type(getattr(function, "__self__", function))
        try:
            path = inspect.getsourcefile(owner) or ""
            line = inspect.getsourcelines(owner)[1]
        except (OSError, TypeError):
            path, line = "", 0
        result["actions"].append({"name": name, "path": path, "line": line})
print(mark + json.dumps(result))
"""


def read_by_import(root: Path, package: str, python: str, files: tuple[Path, ...]) -> ActionCode:
    done = run([python, "-c", _IMPORT_SCRIPT, str(root), package, RESULT_MARK],
               cwd=root, timeout=IMPORT_TIMEOUT_S)
    lines = [line for line in done.output.splitlines() if line.startswith(RESULT_MARK)]
    if not lines:
        raise FatalError(
            f"importing the actions package '{package}' with {python} gave no answer "
            f"(exit {done.returncode}). It said:\n{done.tail(20)}"
        )
    result = json.loads(lines[-1][len(RESULT_MARK):])
    code = ActionCode(files=files)
    for item in result["actions"]:
        code.actions.append(Implemented(item["name"], Path(item["path"] or root), item["line"]))
    error = result["error"]
    if error:
        path = Path(error["path"]) if error["path"] else root
        code.issues.append(CodeIssue(path, int(error["line"]),
                                     f"the action server cannot load this code: "
                                     f"{error['message']}"))
    code.actions.sort(key=lambda a: (str(a.path), a.line))
    return code
