"""YAML → plain data plus the source position of every key and value, for error messages.

PyYAML's composer keeps a mark (line, column) on every node; we construct the data ourselves from
the node tree so each path (("training", "runner", "gpus"), ("data", "mirrors", 0), …) can be
mapped back to `file:line:col`. Duplicate keys, which PyYAML silently lets the last one win, are
reported as errors.

Aliases are allowed (`&defaults` / `<<: *defaults` is how people share settings) but bounded: the
size of the document with every alias expanded is computed on the composed node graph, where an
alias is one shared node, before anything is built. A "billion laughs" spec (nine levels of
`&a [*a, *a, …]`) is refused in milliseconds instead of expanding for minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path_ = tuple[str | int, ...]

MAX_VALUES = 10_000
"""The most values a document may expand to; a full spec is a few hundred."""


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
        _check_expansion(node)
        doc = Document(None)
        doc.data = _build(loader, node, (), doc)
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Mark(mark.line + 1, mark.column + 1) if mark else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise YamlSyntaxError(f"YAML syntax error: {problem}", where) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"YAML error: {exc}", None) from exc
    except RecursionError as exc:  # PyYAML's composer recurses once per level of nesting
        raise YamlSyntaxError("YAML error: the document nests too deeply (a spec has a few levels)", None) from exc
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node) -> None:
    """Raise YamlSyntaxError when the document, aliases expanded, exceeds MAX_VALUES values.

    Each node's expanded size is computed once (memoised by identity), so this is linear in the
    composed graph however far the aliases would multiply; merge keys count the mappings they
    merge, an upper bound of what flattening produces. A recursive alias is refused as well.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise YamlSyntaxError("YAML error: an alias refers to the node that contains it", Mark.of(node))
        active.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        active.discard(key)
        if total > MAX_VALUES:
            raise YamlSyntaxError(
                f"YAML error: the document expands to more than {MAX_VALUES} values through its "
                "aliases (&anchor / *alias); a spec has a few hundred",
                Mark.of(node),
            )
        sizes[key] = total
        return total

    size(root)


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: Path_, doc: Document) -> Any:
    doc.values[path] = Mark.of(node)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<:` merge keys
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping keys must be plain scalars", key_node.start_mark
                )
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
