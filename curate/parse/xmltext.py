"""What the JATS and PubMed readers share: a safe XML parser, entity references, whitespace and formulas.

Safety: no DTD is loaded and nothing is fetched (no XXE); entity references are never expanded by libxml2
(no billion laughs). They are resolved here instead, with a budget: an entity declared in the document's
internal DTD subset by its declared text, a name from the HTML/ISO entity sets (which the JATS and PubMed
DTDs include) by its character, any other name dropped and counted, so that no literal `&name;` reaches the
text. Without libxml2's huge-tree mode, nesting deeper than 256 elements or one text node over 10 MB is a
parse error (`xml_broken`), never a RecursionError or a runaway allocation.
"""

from __future__ import annotations

import html.entities
import re
from collections import Counter

from lxml import etree

from curate.schema import Rejection

MATHML_NS = "http://www.w3.org/1998/Math/MathML"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
MAX_ENTITY_CHARS = 100_000  # all entity expansions of one document together

_XML_SPACE = re.compile(r"[ \t\r\n]+")  # XML's whitespace only: a no-break space is text, kept as it is
# What str.split() splits on besides XML's whitespace (XML text cannot hold the C0 controls among them).
_OTHER_SPACE = re.compile("[\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
_ENTITY_REF = re.compile(r"&(#x[0-9a-fA-F]+|#[0-9]+|[A-Za-z_:][\w.:-]*);")
_ENTITY_REF_BYTES = re.compile(rb"&([A-Za-z_:][\w.:-]*);")
_NAMED_REFERENCE = re.compile(rb"&(?!(?:amp|lt|gt|quot|apos);)[A-Za-z_:]")
_DECLARED_BYTES = re.compile(rb"<!ENTITY\s+([A-Za-z_:][\w.:-]*)\s")
_TAG = re.compile(r"<[^>]*>")
_PREDEFINED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}

PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    remove_comments=True,
    remove_pis=True,
)


def collapse(text: str) -> str:
    """Runs of XML whitespace as one space, trimmed (no-break spaces are kept)."""
    if text.isascii() or not _OTHER_SPACE.search(text):
        return " ".join(text.split())  # the same result, 3-4x faster than the regex
    return _XML_SPACE.sub(" ", text).strip()


def syntax_detail(exc: BaseException) -> str:
    """An XML error as one short line."""
    return collapse(str(exc))[:200]


def parse_xml(data: bytes, parser: etree.XMLParser = PARSER) -> tuple[etree._Element, Counter]:
    """The root of an XML document and the entity names it used but nobody declared (dropped, counted).

    Raises Rejection("xml_broken") for XML that is not well-formed, nests too deeply or expands too much.
    """
    unresolved: Counter = Counter()
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        if "not defined" not in str(exc):
            raise Rejection("xml_broken", f"malformed XML: {syntax_detail(exc)}") from None
        # No DOCTYPE names a DTD, so libxml2 refuses an undeclared entity: replace the references by what
        # they stand for and read the document again.
        data = _replace_undeclared(data, unresolved)
        try:
            root = etree.fromstring(data, parser)
        except etree.XMLSyntaxError as again:
            raise Rejection("xml_broken", f"malformed XML: {syntax_detail(again)}") from None
    except ValueError as exc:  # lxml refuses some inputs before libxml2 sees them
        raise Rejection("xml_broken", f"malformed XML: {exc}") from None
    if root is None:
        raise Rejection("xml_broken", "empty document")
    if _NAMED_REFERENCE.search(data):  # most documents have none: no need to walk the tree for them
        resolve_entities(root, unresolved)
    return root, unresolved


def resolve_entities(root: etree._Element, unresolved: Counter) -> None:
    """Replace the entity reference nodes under root by their text (see the module docstring)."""
    references = list(root.iter(etree.Entity))
    if not references:
        return
    dtd = root.getroottree().docinfo.internalDTD
    # External entities (SYSTEM/PUBLIC) are never read: they count as unresolved.
    entities = dtd.iterentities() if dtd is not None else ()
    declared = {e.name: e.content or "" for e in entities if not e.system_url}
    budget = [MAX_ENTITY_CHARS]
    cache: dict[str, str | None] = {}
    for ref in references:
        text = _expand(ref.name, declared, cache, budget, unresolved, depth=0)
        _replace(ref, (text or "") + (ref.tail or ""))


def _expand(
    name: str, declared: dict[str, str], cache: dict, budget: list[int], unresolved: Counter, depth: int
) -> str | None:
    if name in cache:
        text = cache[name]
    elif name in declared:
        if depth > 8:
            raise Rejection("xml_broken", f"entity &{name}; nests more than 8 entities deep")
        content = _TAG.sub("", declared[name])
        text = _ENTITY_REF.sub(
            lambda m: _reference(m.group(1), declared, cache, budget, unresolved, depth + 1) or "", content
        )
        cache[name] = text
    else:
        text = _PREDEFINED.get(name) or html.entities.html5.get(f"{name};")
        if text is None:
            unresolved[name] += 1
        cache[name] = text
    budget[0] -= len(text or "")
    if budget[0] < 0:
        raise Rejection("xml_broken", f"entities expand to more than {MAX_ENTITY_CHARS} characters")
    return text


def _reference(ref: str, declared: dict, cache: dict, budget: list[int], unresolved: Counter, depth: int):
    if ref.startswith("#"):
        try:
            return chr(int(ref[2:], 16) if ref[1] in "xX" else int(ref[1:]))
        except (ValueError, OverflowError):
            return ""
    return _expand(ref, declared, cache, budget, unresolved, depth)


def _replace(node: etree._Element, text: str) -> None:
    """Remove a node from the tree, leaving text where it stood."""
    parent = node.getparent()
    previous = node.getprevious()
    if previous is not None:
        previous.tail = (previous.tail or "") + text
    elif parent is not None:
        parent.text = (parent.text or "") + text
    if parent is not None:
        parent.remove(node)


def _replace_undeclared(data: bytes, unresolved: Counter) -> bytes:
    """References to undeclared entities as character references (known names) or nothing (counted)."""
    declared = {m.group(1) for m in _DECLARED_BYTES.finditer(data)}

    def one(match: re.Match) -> bytes:
        name = match.group(1)
        if name in declared or name.decode("ascii", "replace") in _PREDEFINED:
            return match.group(0)
        text = html.entities.html5.get(f"{name.decode('ascii', 'replace')};")
        if text is None:
            unresolved[name.decode("ascii", "replace")] += 1
            return b""
        return "".join(f"&#{ord(c)};" for c in text).encode("ascii")

    return _ENTITY_REF_BYTES.sub(one, data)


def local(tag: object) -> str:
    """The local name of an element's tag ('' for entities and other nodes)."""
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2] if tag[:1] == "{" else tag


# ------------------------------------------------------------------------------------------------ formulas

# Accents set over a letter (munder/mover with accent): as combining characters, so "V̇O2" reads as written.
_COMBINING = {
    "˙": "\u0307",
    ".": "\u0307",
    "·": "\u0307",
    "¨": "\u0308",
    "^": "\u0302",
    "ˆ": "\u0302",
    "~": "\u0303",
    "˜": "\u0303",
    "¯": "\u0304",
    "‾": "\u0305",
    "_": "\u0332",
    "→": "\u20d7",
    "⃗": "\u20d7",
    "´": "\u0301",
    "`": "\u0300",
    "ˇ": "\u030c",
    "˘": "\u0306",
}
# Operators written with a space on each side when they stand between two operands.
_SPACED_OPERATORS = set("=<>≤≥≠≈≡≅∼≃∝→←↔⇒⇔⇐±∓+−×÷") | {"<=", ">=", "-"}
# Invisible operators (function application, times, separator, plus) carry meaning, not ink: left in the
# text they glue or split words with a character nobody sees.
_FUNCTION_APPLICATION = "\u2061"
_INVISIBLE = {_FUNCTION_APPLICATION: " ", "\u2062": "", "\u2063": "", "\u2064": ""}
_INVISIBLE_CHARS = str.maketrans(_INVISIBLE)
_MATH_SKIP = {"annotation", "annotation-xml", "mphantom", "none", "mprescripts", "malignmark", "maligngroup"}


def math_text(math: etree._Element) -> str:
    """MathML as linear text: tokens joined as printed ("V̇O2max", "3He/129Xe", "p < 0.05")."""
    return collapse(_math(math).translate(_INVISIBLE_CHARS))


def _math(el: etree._Element) -> str:
    name = local(el.tag)
    if name in ("mi", "mn", "ms", "mglyph"):
        return collapse("".join(el.itertext()))
    if name == "mo":
        return collapse("".join(el.itertext()))
    if name == "mtext":
        text = _XML_SPACE.sub(" ", "".join(el.itertext()))
        return text if text.strip() else " "
    if name == "mspace":
        return " "
    if name in _MATH_SKIP:
        return ""
    children = [c for c in el if isinstance(c.tag, str)]
    if name == "semantics":
        return _math(children[0]) if children else ""
    if name in ("maction",):
        return _math(children[0]) if children else ""
    if name == "mfrac" and len(children) == 2:
        return f"{_group(children[0])}/{_group(children[1])}"
    if name == "msqrt":
        return f"√{_group_row(children)}"
    if name == "mroot" and len(children) == 2:
        return f"{_math(children[1])}√{_group(children[0])}"
    if name in ("mover", "munder") and len(children) == 2:
        base, mark = _math(children[0]), _math(children[1])
        combining = _COMBINING.get(mark.strip())
        if combining and len(base) == 1:
            return base + combining
        return base + mark
    if name == "mmultiscripts" and children:
        base, post, pre, seen_pre = _math(children[0]), [], [], False
        for child in children[1:]:
            if local(child.tag) == "mprescripts":
                seen_pre = True
                continue
            (pre if seen_pre else post).append(_math(child))
        return "".join(pre) + base + "".join(post)
    if name == "mfenced":
        opening, closing = el.get("open", "("), el.get("close", ")")
        separator = (el.get("separators", ",").strip() or ",")[0]
        return opening + f"{separator} ".join(_math(c) for c in children) + closing
    if name == "mtable":
        return "; ".join(collapse(_math(row)) for row in children)
    if name in ("mtr", "mlabeledtr"):
        return " ".join(collapse(_math(cell)) for cell in children)
    # math, mrow, mstyle, msub, msup, msubsup, munderover, mpadded, menclose, merror, mtd and unknown ones.
    return _row(children)


def _row(children: list) -> str:
    texts = [_math(child) for child in children]
    out = []
    for i, (child, text) in enumerate(zip(children, texts, strict=True)):
        if local(child.tag) == "mo" and text in _INVISIBLE:
            # A function's name and its argument print apart ("sin x"), unless a bracket follows: "f(t)".
            following = texts[i + 1].lstrip()[:1] if i + 1 < len(texts) else ""
            text = " " if text == _FUNCTION_APPLICATION and following not in ("", "(", "[", "{") else ""
        elif local(child.tag) == "mo" and text in _SPACED_OPERATORS and 0 < i < len(children) - 1:
            text = f" {text} "
        out.append(text)
    return "".join(out)


def _group(el: etree._Element) -> str:
    """An operand of a fraction: in parentheses when it is more than one token."""
    text = collapse(_math(el))
    compound = len(text) > 1 and (" " in text or any(op in text for op in "+−-/"))
    return f"({text})" if compound else text


def _group_row(children: list) -> str:
    text = collapse(_row(children))
    return f"({text})" if len(text) > 1 else text


_TEX_DOCUMENT = re.compile(r"\\begin\{document\}(.*?)\\end\{document\}", re.S)
_TEX_DELIMITERS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))


def tex_text(tex: str) -> str:
    """The formula of a `tex-math` element, without the LaTeX document wrapper and math delimiters."""
    body = _TEX_DOCUMENT.search(tex)
    text = collapse(body.group(1) if body else tex)
    for opening, closing in _TEX_DELIMITERS:
        if text.startswith(opening) and text.endswith(closing) and len(text) >= len(opening) + len(closing):
            text = text[len(opening) : len(text) - len(closing)].strip()
            break
    return text
