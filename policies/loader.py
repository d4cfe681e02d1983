"""Loading a policy from YAML, safely, with every problem located at file:line:col.

The YAML is composed into a node tree with a safe loader, so every value keeps
the mark (line, column) where it was written; validation errors from the
models are then mapped back to those marks. All problems of a file are
reported at once. Aliases are expanded under a budget (alias bombs), files
have a size limit, and only plain YAML data is accepted (no tags that build
objects).
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from policies.errors import PolicyIssue, PolicyLoadError
from policies.models import Policy, semantic_problems

MAX_POLICY_BYTES = 1024 * 1024
# Expanded nodes allowed when aliases are followed: generous for real
# policies (a large one has a few thousand), far below an alias bomb.
MAX_EXPANDED_NODES = 100_000

_BOOL_TAG = "tag:yaml.org,2002:bool"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _PolicyYamlLoader(yaml.SafeLoader):
    """Safe loader with YAML 1.2 booleans: `NO` (Norway) and `yes`/`off` stay text.

    Timestamps also stay text; the models decide what a value means.
    """

    yaml_implicit_resolvers = {  # noqa: RUF012 -- PyYAML's own class-level table
        first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL_TAG, _TIMESTAMP_TAG)]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_PolicyYamlLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

Path_ = tuple[str | int, ...]


class _Marks:
    """Where each value (and each mapping key) of the document was written."""

    def __init__(self) -> None:
        self.value: dict[Path_, yaml.Mark] = {}
        self.key: dict[Path_, yaml.Mark] = {}
        # Scalars and flow collections (`[a, b]`, `{k: v}`) are pointed at where
        # the value starts; block collections at their key, where the author reads.
        self.inline: set[Path_] = set()


class _TooLarge(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        self.mark = mark


class _Builder:
    """Turns a composed node tree into plain data, recording marks and problems."""

    def __init__(self, loader: _PolicyYamlLoader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.marks = _Marks()
        self.issues: list[PolicyIssue] = []
        self.expanded = 0
        self.active: set[int] = set()

    def issue(self, mark: yaml.Mark, message: str) -> None:
        self.issues.append(PolicyIssue(self.file, mark.line + 1, mark.column + 1, message))

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.expanded += 1
        if self.expanded > MAX_EXPANDED_NODES:
            raise _TooLarge(node.start_mark)
        self.marks.value.setdefault(path, node.start_mark)
        if id(node) in self.active:
            self.issue(node.start_mark, "recursive alias: an anchor refers to itself")
            return None
        if isinstance(node, yaml.ScalarNode):
            self.marks.inline.add(path)
            return self.scalar(node)
        if getattr(node, "flow_style", False):
            self.marks.inline.add(path)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                self._check_plain_tag(node, "tag:yaml.org,2002:seq")
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                self._check_plain_tag(node, "tag:yaml.org,2002:map")
                return self._mapping(node, path)
        finally:
            self.active.discard(id(node))
        raise AssertionError(f"unexpected YAML node {type(node).__name__}")  # pragma: no cover

    def scalar(self, node: yaml.ScalarNode) -> Any:
        """A scalar's value; an unsupported tag is an issue, not an exception."""
        try:
            return self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError) as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            self.issue(
                node.start_mark,
                f"unsupported YAML tag {node.tag!r}: policies hold plain data only ({problem})",
            )
            return None

    def _check_plain_tag(self, node: yaml.Node, expected: str) -> None:
        if node.tag != expected:
            self.issue(node.start_mark, f"unsupported YAML tag {node.tag!r}: use plain YAML")

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, yaml.Mark] = {}
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.issue(key_node.start_mark, "a key must be plain text, not a list or mapping")
                continue
            key = self.scalar(key_node)
            if key is None and key_node.tag not in ("tag:yaml.org,2002:null",):
                continue  # an unsupported tag on a key: already reported
            if not isinstance(key, str):
                key = key_node.value  # a number or boolean used as a key: keep its text
            if key in first_seen:
                where = first_seen[key]
                self.issue(
                    key_node.start_mark,
                    f"duplicate key {key!r} (first at line {where.line + 1}); "
                    "a key may appear once in a mapping",
                )
                continue
            first_seen[key] = key_node.start_mark
            self.marks.key[(*path, key)] = key_node.start_mark
            result[key] = self.build(value_node, (*path, key))
        for source in merged:
            # YAML merge keys (`<<: *defaults`): keys already written win.
            sources = source.value if isinstance(source, yaml.SequenceNode) else [source]
            for item in sources:
                if not isinstance(item, yaml.MappingNode):
                    self.issue(item.start_mark, "a merge (<<) takes a mapping or list of mappings")
                    continue
                for key, value in self._mapping(item, path).items():
                    result.setdefault(key, value)
        return result


def _decode(raw: bytes, file: str) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise PolicyLoadError(
            file,
            [
                PolicyIssue(
                    file,
                    line,
                    col,
                    f"the file is not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                    "save it as UTF-8",
                )
            ],
        ) from None


def load_policy(path: str | Path, *, max_bytes: int = MAX_POLICY_BYTES) -> Policy:
    """Load and validate a policy file; raises PolicyLoadError listing every problem."""
    return load_policy_text(
        read_yaml_file(path, max_bytes=max_bytes), file=str(path), max_bytes=max_bytes
    )


def load_policy_text(
    text: str, *, file: str = "<policy>", max_bytes: int = MAX_POLICY_BYTES
) -> Policy:
    """Load and validate a policy from YAML text; `file` names it in errors."""
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise PolicyLoadError(
            file, [PolicyIssue(file, 1, 1, f"the policy is over the {max_bytes}-byte limit")]
        )
    data, marks, issues = _compose(text, file)
    try:
        policy = Policy.model_validate(data, context={"defer_semantics": True})
    except ValidationError as exc:
        issues = issues + _validation_issues(exc, data, marks, file, Policy, issues)
        raise PolicyLoadError(file, _sorted_unique(issues)) from None
    if issues:
        # Structure is valid but the YAML had problems (e.g. a duplicate key whose
        # second value was ignored): do not look for contradictions in a guess.
        raise PolicyLoadError(file, _sorted_unique(issues))
    for loc, message in semantic_problems(policy):
        mark = _mark_for(loc, data, marks, prefer_key=False)
        issues.append(
            PolicyIssue(file, mark.line + 1, mark.column + 1, f"{_where(loc)}: {message}")
        )
    if issues:
        raise PolicyLoadError(file, _sorted_unique(issues))
    policy._source = file
    return policy


def _compose(text: str, file: str) -> tuple[Any, _Marks, list[PolicyIssue]]:
    try:
        loader = _PolicyYamlLoader(text)
    except yaml.reader.ReaderError as exc:
        # A character YAML does not allow (a control character): locate it.
        before = text[: exc.position]
        line = before.count("\n") + 1
        col = exc.position - (before.rfind("\n") + 1) + 1
        raise PolicyLoadError(
            file,
            [
                PolicyIssue(
                    file,
                    line,
                    col,
                    f"character U+{exc.character:04X} is not allowed in YAML; remove it",
                )
            ],
        ) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            problem = exc.problem or "invalid YAML"
            context = f" ({exc.context})" if exc.context else ""
            raise PolicyLoadError(
                file, [PolicyIssue(file, line, col, f"YAML syntax: {problem}{context}")]
            ) from None
        except yaml.YAMLError as exc:
            raise PolicyLoadError(file, [PolicyIssue(file, 1, 1, f"YAML: {exc}")]) from None
        if node is None:
            raise PolicyLoadError(
                file,
                [
                    PolicyIssue(
                        file,
                        1,
                        1,
                        "the file is empty: a policy needs metadata, jurisdiction and streams",
                    )
                ],
            )
        builder = _Builder(loader, file)
        try:
            data = builder.build(node, ())
        except _TooLarge as exc:
            raise PolicyLoadError(
                file,
                [
                    PolicyIssue(
                        file,
                        exc.mark.line + 1,
                        exc.mark.column + 1,
                        f"aliases expand to more than {MAX_EXPANDED_NODES} values "
                        "(an alias bomb?); write the policy without nested aliases",
                    )
                ],
            ) from None
        if not isinstance(data, dict):
            raise PolicyLoadError(
                file,
                [
                    PolicyIssue(
                        file,
                        node.start_mark.line + 1,
                        node.start_mark.column + 1,
                        "a policy is a mapping with metadata, jurisdiction and streams",
                    )
                ],
            )
        # Problems of the YAML itself (duplicate keys, tags) are reported together
        # with the validation problems, so the author sees everything at once.
        return data, builder.marks, builder.issues
    finally:
        loader.dispose()


def _validation_issues(
    exc: ValidationError,
    data: Any,
    marks: _Marks,
    file: str,
    root: type[BaseModel],
    yaml_issues: list[PolicyIssue],
) -> list[PolicyIssue]:
    """Located issues of a validation error, without echoes of problems already reported."""
    errors = exc.errors(include_url=False)
    # A misspelt key is reported once, as "did you mean", not also as a missing key.
    misspelt: set[tuple[Any, ...]] = set()
    for error in errors:
        if error["type"] == "extra_forbidden":
            loc = tuple(error["loc"])
            model = _model_at(loc[:-1], root)
            if isinstance(model, type) and issubclass(model, BaseModel):
                for near in difflib.get_close_matches(
                    str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6
                ):
                    misspelt.add((*loc[:-1], near))
    # A value the YAML layer already rejected (an unsupported tag) is not re-reported.
    seen_at = {(i.line, i.col) for i in yaml_issues}
    result = []
    for error in errors:
        if error["type"] == "missing" and tuple(error["loc"]) in misspelt:
            continue
        issue = _issue_from_error(error, data, marks, file, root)
        if (issue.line, issue.col) not in seen_at:
            result.append(issue)
    return result


def _sorted_unique(issues: list[PolicyIssue]) -> list[PolicyIssue]:
    return sorted(set(issues), key=lambda i: (i.line, i.col, i.message))


# --- mapping validation errors back to the YAML -----------------------------


def _data_path(loc: tuple[str | int, ...], data: Any) -> tuple[Path_, bool, Any]:
    """The part of a pydantic loc that exists in the data; True when it ends at a dict key."""
    path: list[str | int] = []
    cur = data
    at_key = False
    for element in loc:
        if element == "[key]":
            at_key = True
            break
        in_dict = isinstance(cur, dict) and isinstance(element, str) and element in cur
        in_list = isinstance(cur, list) and isinstance(element, int) and 0 <= element < len(cur)
        if in_dict or in_list:
            path.append(element)
            cur = cur[element]
        # else: a pydantic-internal element (union branch, validator name): skip it
    return tuple(path), at_key, cur


def _mark_for(loc: tuple[str | int, ...], data: Any, marks: _Marks, prefer_key: bool) -> yaml.Mark:
    path, at_key, _ = _data_path(loc, data)
    while path and path not in marks.value:
        path = path[:-1]
    if at_key or (prefer_key and path in marks.key):
        return marks.key.get(path, marks.value.get(path, marks.value[()]))
    if path in marks.inline or path not in marks.key:
        return marks.value.get(path, marks.value[()])
    # A mapping or list value: point at its key, where the author reads it.
    return marks.key[path]


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
            annotation = options[0] if len(options) == 1 else annotation
            if len(options) != 1:
                return annotation
        else:
            return annotation


def _model_at(loc: tuple[str | int, ...], root: type[BaseModel] = Policy) -> Any:
    """The model class (or container type) expected at a pydantic loc."""
    current: Any = root
    for element in loc:
        current = _unwrap(current)
        origin = get_origin(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(element))
            if field is None:
                return None
            current = field.annotation
        elif origin is dict:
            current = get_args(current)[1]
        elif origin is list:
            current = get_args(current)[0]
        else:
            return None
    return _unwrap(current)


_TYPE_WORDS = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping (key: value lines)",
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
    "list_type": "a list (- item lines)",
}


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the text {shown!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _where(loc: tuple[str | int, ...]) -> str:
    shown = [str(p) for p in loc if p != "[key]"]
    return ".".join(shown) if shown else "the policy"


def _issue_from_error(
    error: ErrorDetails, data: Any, marks: _Marks, file: str, root: type[BaseModel] = Policy
) -> PolicyIssue:
    loc = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    prefer_key = False
    if kind == "missing":
        parent = loc[:-1]
        message = f"{_where(parent)}: missing required key {loc[-1]!r}"
        model = _model_at(parent, root)
        if isinstance(model, type) and issubclass(model, BaseModel):
            required = [n for n, f in model.model_fields.items() if f.is_required()]
            message += f" (required here: {', '.join(required)})"
        mark = _mark_for(parent, data, marks, prefer_key=True)
        return PolicyIssue(file, mark.line + 1, mark.column + 1, message)
    if kind == "extra_forbidden":
        prefer_key = True
        key = str(loc[-1])
        model = _model_at(loc[:-1], root)
        valid = (
            list(model.model_fields)
            if (isinstance(model, type) and issubclass(model, BaseModel))
            else []
        )
        near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        message = f"unknown key {key!r} in {_where(loc[:-1])}"
        if near:
            message += f"; did you mean {near[0]!r}?"
        elif valid:
            message += f"; expected one of: {', '.join(valid)}"
    elif kind == "literal_error":
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        message = f"{_where(loc)}: expected one of {', '.join(expected)}; got {_describe(value)}"
        if isinstance(value, str):
            near = difflib.get_close_matches(value, expected, n=1, cutoff=0.6)
            if near:
                message += f"; did you mean {near[0]!r}?"
    elif kind in _TYPE_WORDS:
        message = f"{_where(loc)}: expected {_TYPE_WORDS[kind]}, got {_describe(value)}"
    elif kind == "string_pattern_mismatch":
        message = (
            f"{_where(loc)}: {value!r} is not a valid {_pattern_name(loc)} "
            f"(expected pattern {ctx.get('pattern')})"
        )
    elif kind in ("too_short", "too_long") and isinstance(value, list | dict):
        message = f"{_where(loc)}: {error['msg'][0].lower()}{error['msg'][1:]}"
        if kind == "too_short" and not value:
            message = f"{_where(loc)}: must not be empty"
    elif kind in ("value_error", "assertion_error"):
        msg = error["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            if msg.startswith(prefix):
                msg = msg[len(prefix) :]
        message = f"{_where(loc)}: {msg}"
    else:
        msg = error["msg"]
        message = f"{_where(loc)}: {msg[0].lower()}{msg[1:]}"
    mark = _mark_for(loc, data, marks, prefer_key=prefer_key)
    return PolicyIssue(file, mark.line + 1, mark.column + 1, message)


def _pattern_name(loc: tuple[str | int, ...]) -> str:
    names = [p for p in loc if isinstance(p, str) and p != "[key]"]
    if names and names[0] == "streams" and len(names) <= 2:
        return "stream name"
    if "fields" in names or (names and names[-1] in ("key", "field")):
        return "field path (letters, digits, _ and -, parts joined by dots)"
    if names and names[-1] == "id":
        return "rule id"
    return "name"


M = typing.TypeVar("M", bound=BaseModel)


def load_yaml_model(
    text: str, model: type[M], *, file: str, max_bytes: int = MAX_POLICY_BYTES
) -> tuple[M, Any]:
    """Validate YAML text against any model with the same located errors (test cases use it).

    Returns the model and the plain data it was built from.
    """
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise PolicyLoadError(
            file, [PolicyIssue(file, 1, 1, f"the file is over the {max_bytes}-byte limit")]
        )
    data, marks, issues = _compose(text, file)
    try:
        value = model.model_validate(data)
    except ValidationError as exc:
        issues = issues + _validation_issues(exc, data, marks, file, model, issues)
        raise PolicyLoadError(file, _sorted_unique(issues)) from None
    if issues:
        raise PolicyLoadError(file, _sorted_unique(issues))
    return value, data


def read_yaml_file(path: str | Path, *, max_bytes: int = MAX_POLICY_BYTES) -> str:
    """A YAML file's text, refused before parsing if too large or not UTF-8."""
    file = str(path)
    try:
        size = os.stat(path).st_size
        if size > max_bytes:
            raise PolicyLoadError(
                file,
                [
                    PolicyIssue(
                        file,
                        1,
                        1,
                        f"the file is {size} bytes, over the {max_bytes}-byte limit for a "
                        "policy; split it or remove what is not policy",
                    )
                ],
            )
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise PolicyLoadError(
            file, [PolicyIssue(file, 1, 1, f"cannot read the file: {exc.strerror or exc}")]
        ) from None
    if len(raw) > max_bytes:  # grew between stat and read
        raise PolicyLoadError(
            file, [PolicyIssue(file, 1, 1, f"the file is over the {max_bytes}-byte limit")]
        )
    return _decode(raw, file)


def read_policy_data(path: str | Path) -> Any:
    """The plain data of a policy file as the loader reads it (YAML 1.2 booleans), unvalidated."""
    data, _, issues = _compose(read_yaml_file(path), str(path))
    if issues:
        raise PolicyLoadError(str(path), _sorted_unique(issues))
    return data


def iter_issues(error: PolicyLoadError) -> Iterator[str]:
    """The `FILE:LINE:COL: message` lines of a load error."""
    for issue in error.issues:
        yield str(issue)
