"""YAML → plain data plus the source position of every key and value, for error messages.

PyYAML's composer keeps a mark (line, column) on every node; we construct the data ourselves from
the node tree so each path (("training", "runner", "gpus"), ("data", "mirrors", 0), …) can be
mapped back to `file:line:col`. Duplicate keys, which PyYAML silently lets the last one win, are
reported as errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based

    @classmethod
    def of(cls, node: yaml.Node) -> Mark:
        return cls(node.start_mark.line + 1, node.start_mark.column + 1)


@dataclass
class Document:
    data: Any
    values: dict[Path_, Mark] = field(default_factory=dict)  # where each value starts
    keys: dict[Path_, Mark] = field(default_factory=dict)  # where each mapping key starts
    duplicates: list[tuple[Path_, Mark]] = field(default_factory=list)

    def locate(self, path: Path_) -> tuple[Path_, Mark]:
        """The longest prefix of `path` present in the document, and its mark.

        Pydantic's error locations may carry segments that are not YAML keys (a discriminated
        union's tag, for instance); those are skipped rather than ending the walk.
        """
        found: Path_ = ()
        for segment in path:
            candidate = (*found, segment)
            if candidate in self.values:
                found = candidate
        if found in self.keys:  # point at the key, where a reader looks
            return found, self.keys[found]
        return found, self.values.get(found, Mark(1, 1))


class YamlSyntaxError(Exception):
    def __init__(self, message: str, mark: Mark | None) -> None:
        super().__init__(message)
        self.message, self.mark = message, mark


def parse(text: str) -> Document:
    """Parse one YAML document; raise YamlSyntaxError with its position on bad syntax."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Document(None)
        doc = Document(None)
        doc.data = _build(loader, node, (), doc)
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Mark(mark.line + 1, mark.column + 1) if mark else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise YamlSyntaxError(f"YAML syntax error: {problem}", where) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"YAML error: {exc}", None) from None
    finally:
        loader.dispose()


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: Path_, doc: Document) -> Any:
    doc.values[path] = Mark.of(node)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<:` merge keys
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping keys must be plain scalars", key_node.start_mark
                )
            child = (*path, key)
            if key in out:
                doc.duplicates.append((child, Mark.of(key_node)))
            doc.keys[child] = Mark.of(key_node)
            out[key] = _build(loader, value_node, child, doc)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, i), doc) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
