"""The binding's picture of the C ABI (iobus._abi, iobus._native) checked
against include/iobus.h, where it is defined: every status, ack status,
dispatch mode, record kind and flag with its value (both ways: a constant
added to the header must be mirrored here), the SIZE_MAX convention for
NUL-terminated JSON, the record layout documented above
iobus_server_poll_records (its header table, status byte, field encoding,
and the handle and fields of every kind), the structures the binding fills
(iobus_buf, iobus_selection), and the prototype of every function the
binding calls, including that a NULL callback is allowed wherever the
binding passes one. A change in the header fails these tests until the
binding follows.

The header is read from the repository (../../../include/iobus.h); only a
test run from an installed package without the repository skips.
"""

from __future__ import annotations

import ast
import ctypes
import re
import struct
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

import iobus
from iobus import _abi as abi
from iobus import _native as n

REPO = Path(__file__).resolve().parent.parent.parent.parent
HEADER = REPO / "include" / "iobus.h"

if not HEADER.is_file():
    if (REPO / "Cargo.toml").is_file():
        raise AssertionError(f"{HEADER} is missing from the repository")
    pytest.skip("include/iobus.h is not beside this test (an installed-package run)", allow_module_level=True)

TEXT = HEADER.read_text(encoding="utf-8")

# Public names of _abi that are not mirrors of a header constant, each
# checked by a test below.
NOT_HEADER_CONSTANTS = {
    "SIZE_MAX",
    "JSON_NUL_TERMINATED",
    "RECORD_HEADER_ITEMS",
    "RECORD_HEADER",
    "RECORD_FIELD_LEN",
    "RecordFields",
    "RECORD_FIELDS",
    "CONNECT_RECOVERED",
}
# Header macros that are not ABI constants a binding mirrors.
NOT_BINDING_CONSTANTS = re.compile(r"IOBUS_H|IOBUS_VERSION_(MAJOR|MINOR|PATCH)")


# ---- reading the header ----------------------------------------------------------------


def _code(text: str) -> str:
    """The header without its comments."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


CODE = _code(TEXT)


def _int_expr(expr: str) -> Optional[int]:
    """The value of a C integer constant expression made of literals,
    parentheses, unary minus, shifts and bitwise or; None for anything
    else (SIZE_MAX, strings, ...)."""
    expr = re.sub(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]*\b", r"\1", expr.strip())
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return None

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.LShift, ast.BitOr, ast.Add)):
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.LShift):
                return left << right
            return left | right if isinstance(node.op, ast.BitOr) else left + right
        raise ValueError(ast.dump(node))

    try:
        return value(tree.body)
    except ValueError:
        return None


def header_enums() -> Dict[str, Dict[str, int]]:
    """enum name → enumerator → value."""
    enums: Dict[str, Dict[str, int]] = {}
    for name, body in re.findall(r"\benum\s+(\w+)\s*\{([^}]*)\}", CODE):
        values: Dict[str, int] = {}
        following = 0
        for item in body.split(","):
            item = item.strip()
            if not item:
                continue
            ident, _, expr = item.partition("=")
            ident = ident.strip()
            if expr.strip():
                parsed = _int_expr(expr)
                assert parsed is not None, f"enum {name}: cannot read the value of {item!r}"
                following = parsed
            values[ident] = following
            following += 1
        enums[name] = values
    return enums


def header_defines() -> Dict[str, str]:
    """macro → its expansion (as written)."""
    return {
        name: value.strip()
        for name, value in re.findall(r"^[ \t]*#[ \t]*define[ \t]+(IOBUS_\w+)[ \t]*([^\n]*)$", CODE, flags=re.M)
    }


def header_constants() -> Dict[str, Tuple[int, str]]:
    """Every integer constant of the header a binding mirrors: name →
    (value, where: the enum's name or "#define")."""
    found: Dict[str, Tuple[int, str]] = {}
    for enum, values in header_enums().items():
        for name, value in values.items():
            assert name not in found, f"{name} is defined twice"
            found[name] = (value, enum)
    for name, expansion in header_defines().items():
        if NOT_BINDING_CONSTANTS.fullmatch(name):
            continue
        value = _int_expr(expansion)
        if value is not None:
            assert name not in found, f"{name} is defined twice"
            found[name] = (value, "#define")
    return found


def binding_constants() -> Dict[str, int]:
    """The integer constants of iobus._abi that mirror the header."""
    return {
        name: value
        for name, value in vars(abi).items()
        if name.isupper() and type(value) is int and name not in NOT_HEADER_CONSTANTS
    }


def doc_of(function: str) -> str:
    """The documentation comment right above a function's declaration,
    without its comment markers, on one line."""
    match = re.search(
        r"/\*\*((?:(?!\*/).)*)\*/\s*(?:enum\s+|struct\s+)?[\w\s\*]*?\b" + function + r"\s*\(", TEXT, flags=re.S
    )
    assert match, f"no documentation above {function} in {HEADER}"
    lines = [re.sub(r"^\s*\*\s?", "", line) for line in match.group(1).splitlines()]
    return " ".join(" ".join(lines).split())


def without_parentheses(text: str) -> str:
    while True:
        shorter = re.sub(r"\s*\([^()]*\)", "", text)
        if shorter == text:
            return text
        text = shorter


# ---- constants --------------------------------------------------------------------------------


def test_the_header_defines_the_enums_the_binding_mirrors():
    enums = header_enums()
    for name in ("iobus_status", "iobus_ack_status", "iobus_dispatch", "iobus_record_kind"):
        assert enums.get(name), f"{name} is not an enum of {HEADER}"


def test_every_constant_of_the_binding_has_the_headers_value():
    header = header_constants()
    wrong = []
    for name, value in sorted(binding_constants().items()):
        c_name = "IOBUS_" + name
        if c_name not in header:
            wrong.append(f"iobus._abi.{name} = {value}: {c_name} is not in iobus.h")
        elif header[c_name][0] != value:
            wrong.append(f"iobus._abi.{name} = {value}, but iobus.h has {c_name} = {header[c_name][0]}")
    assert not wrong, "\n".join(wrong)


def test_every_constant_of_the_header_is_mirrored_by_the_binding():
    ours = binding_constants()
    missing = [
        f"{c_name} = {value} ({where})"
        for c_name, (value, where) in sorted(header_constants().items())
        if c_name[len("IOBUS_") :] not in ours
    ]
    assert not missing, "iobus._abi does not declare: " + ", ".join(missing)


def test_every_public_name_of_the_constants_module_is_checked():
    public = {
        name
        for name, value in vars(abi).items()
        if not name.startswith("_") and name[0].isupper() and getattr(value, "__module__", "") != "typing"
    }
    unchecked = public - set(binding_constants()) - NOT_HEADER_CONSTANTS
    assert not unchecked, f"iobus._abi declares names no test checks against iobus.h: {sorted(unchecked)}"


def test_the_loaded_library_is_the_headers_version():
    defines = header_defines()
    version = ".".join(defines[f"IOBUS_VERSION_{part}"] for part in ("MAJOR", "MINOR", "PATCH"))
    assert iobus.library_version() == version


def test_json_length_sentinel_is_size_max():
    size_max = (1 << (8 * ctypes.sizeof(ctypes.c_size_t))) - 1
    assert abi.SIZE_MAX == size_max
    assert abi.JSON_NUL_TERMINATED == size_max
    expansion = header_defines().get("IOBUS_JSON_NUL_TERMINATED")
    if expansion is not None:
        assert expansion.strip("()") == "SIZE_MAX", f"IOBUS_JSON_NUL_TERMINATED is {expansion}"
    conventions = " ".join(re.sub(r"^\s*\*\s?", "", line) for line in TEXT.split("*/", 1)[0].splitlines())
    assert re.search(r"Length parameters of JSON text take SIZE_MAX for NUL-terminated", " ".join(conventions.split()))


# ---- the record layout ------------------------------------------------------------------------

_WIDTH_CODE = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q"}


def doc_lines(function: str) -> List[str]:
    """The documentation comment right above a function's declaration, line
    by line, without its comment markers."""
    match = re.search(
        r"/\*\*((?:(?!\*/).)*)\*/\s*(?:enum\s+|struct\s+)?[\w\s\*]*?\b" + function + r"\s*\(", TEXT, flags=re.S
    )
    assert match, f"no documentation above {function} in {HEADER}"
    return [re.sub(r"^\s*\*\s?", "", line).rstrip() for line in match.group(1).splitlines()]


def doc_table(lines: List[str], columns: Tuple[str, ...]) -> List[List[str]]:
    """The rows of the Markdown table whose header row has ``columns``."""
    heading = "| " + " | ".join(columns) + " |"
    assert heading in lines, f"no table {heading!r} above iobus_server_poll_records"
    at = lines.index(heading)
    assert re.fullmatch(r"\|(-+\|)+", lines[at + 1].replace(" ", "")), f"{heading}: no separator row"
    rows = []
    for line in lines[at + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == len(columns), f"{line!r} does not have {len(columns)} cells"
        rows.append(cells)
    assert rows, f"{heading}: no rows"
    return rows


RECORDS_DOC = doc_lines("iobus_server_poll_records")
RECORDS_PROSE = " ".join(" ".join(line for line in RECORDS_DOC if not line.startswith("|")).split())


def test_record_header_layout():
    # "=": host byte order, standard sizes, no alignment padding.
    assert re.search(r"host byte order, no padding and no alignment", RECORDS_PROSE)
    assert abi.RECORD_HEADER.format.startswith("=") and abi.RECORD_FIELD_LEN.format.startswith("=")
    size = re.search(r"a (\d+)-byte header", RECORDS_PROSE)
    assert size and int(size.group(1)) == abi.RECORD_HEADER.size
    rows = doc_table(RECORDS_DOC, ("offset", "size", "field"))
    ours = list(abi.RECORD_HEADER_ITEMS)
    assert len(rows) == len(ours), (rows, ours)
    at = 0
    values = 0
    for (name, code), (offset, width, description) in zip(ours, rows):
        assert int(offset) == at, f"{name!r} is documented at byte {offset}, the binding reads it at {at}"
        assert struct.calcsize("=" + code) == int(width), f"{name!r}: {width} bytes in iobus.h, {code!r} here"
        assert re.search(r"\b" + re.escape(name) + r"\b", description), f"{name!r} is documented as {description!r}"
        typed = re.match(r"`(u\d+)`", description)
        if typed:
            assert _WIDTH_CODE[typed.group(1)] == code, f"{name!r} is a {typed.group(1)}, read as {code!r}"
            # The reader's struct takes this item from this offset.
            probe = bytearray(abi.RECORD_HEADER.size)
            probe[at : at + int(width)] = bytes(range(1, int(width) + 1))
            read = abi.RECORD_HEADER.unpack(bytes(probe))
            expected = [0] * len(read)
            expected[values] = int.from_bytes(bytes(range(1, int(width) + 1)), sys.byteorder)
            assert list(read) == expected, f"{name!r} is documented at byte {at}"
            values += 1
        else:
            assert description == "zero" and code == "x" * int(width), f"cannot read the header item {description!r}"
        at += int(width)
    assert abi.RECORD_HEADER.size == at


def test_record_status_byte():
    status = doc_table(RECORDS_DOC, ("offset", "size", "field"))[2][2]
    assert re.search(r"an `iobus_ack_status` for ACK and BROADCAST_ACK", status), status
    recovered = re.search(r"(\d+) for a CONNECT that recovers a dropped socket", status)
    assert recovered, status
    assert abi.CONNECT_RECOVERED == int(recovered.group(1))


def test_record_field_encoding():
    length = re.search(r"A field is a `(u\d+)` length and that many bytes", RECORDS_PROSE)
    assert length, RECORDS_PROSE
    assert abi.RECORD_FIELD_LEN.format == "=" + _WIDTH_CODE[length.group(1)]
    count = re.search(r'"attachments" is a `(u\d+)` count followed by that many fields', RECORDS_PROSE)
    assert count and count.group(1) == length.group(1), RECORDS_PROSE


def documented_handle(cell: str) -> Optional[str]:
    """What a record's handle-or-number is, in ``abi.RecordFields.handle``'s words."""
    if cell == "0":
        return None
    if "`iobus_connect *`" in cell:
        return "connect"
    if "`iobus_ack *`" in cell and re.search(r"\bor 0\b", cell):
        return "ack"
    if cell.startswith("a number"):
        return "count"
    raise AssertionError(f"cannot read the handle {cell!r}")


def test_record_fields_by_kind():
    kinds = header_enums()["iobus_record_kind"]
    documented: Dict[int, Tuple[Optional[str], Tuple[str, ...], bool]] = {}
    for kind_cell, handle_cell, items_cell in doc_table(RECORDS_DOC, ("kind", "handle / number", "items")):
        match = re.fullmatch(r"([A-Z_]+) \((\d+)\)", kind_cell)
        assert match, f"cannot read the kind {kind_cell!r}"
        name, value = match.group(1), int(match.group(2))
        assert kinds.get(f"IOBUS_RECORD_{name}") == value, f"{kind_cell}: not IOBUS_RECORD_{name} = {value}"
        items = [item.strip() for item in without_parentheses(items_cell).split(",")]
        attachments = items[-1] == "attachments"
        names = tuple(items[:-1] if attachments else items)
        assert "attachments" not in names, f"{name}: the attachments are not last"
        documented[value] = (documented_handle(handle_cell), names, attachments)
    assert set(documented) == set(kinds.values()), "every record kind has its fields documented"
    ours = {kind: (spec.handle, spec.names, spec.attachments) for kind, spec in abi.RECORD_FIELDS.items()}
    assert ours == documented


# ---- structures -------------------------------------------------------------------------------


def header_struct(name: str) -> List[Tuple[str, str]]:
    """The fields (name, C type) of ``typedef struct name {...}``."""
    match = re.search(r"typedef\s+struct\s+" + name + r"\s*\{([^}]*)\}\s*" + name + r"\s*;", CODE)
    assert match, f"struct {name} is not in {HEADER}"
    fields = []
    for declaration in match.group(1).split(";"):
        declaration = " ".join(declaration.split())
        if not declaration:
            continue
        field = re.fullmatch(r"(.+?)\s*\b(\w+)", declaration)
        assert field, f"cannot read {declaration!r} in struct {name}"
        fields.append((field.group(2), field.group(1).strip()))
    return fields


@pytest.mark.parametrize("c_name, ours", [("iobus_buf", n.Buf), ("iobus_selection", n.Selection)])
def test_structures_match_their_declarations(c_name, ours):
    callbacks = callback_typedefs()
    declared = header_struct(c_name)
    fields = ours._fields_
    assert [name for name, _ in fields] == [name for name, _ in declared]
    for (name, t), (_, c_type) in zip(fields, declared):
        assert ctypes_kind(t) == c_kind(c_type, callbacks), f"{c_name}.{name} is {c_type} in iobus.h, {t} here"


def test_selection_flags_fit_their_field():
    fields = dict(header_struct("iobus_selection"))
    assert fields["flags"] == "uint32_t"
    flags = abi.SELECTION_VOLATILE | abi.SELECTION_LOCAL
    assert n.Selection(flags=flags).flags == flags


# ---- prototypes -------------------------------------------------------------------------------


def header_functions() -> Dict[str, Tuple[str, List[str]]]:
    """Declared function → (return type, parameter types), spaces normalized."""
    code = re.sub(r"^[ \t]*#[^\n]*$", " ", CODE, flags=re.M)
    code = code.replace('extern "C"', " ")
    found: Dict[str, Tuple[str, List[str]]] = {}
    for statement in code.split(";"):
        statement = " ".join(re.split(r"[{}]", statement)[-1].split())
        match = re.fullmatch(r"(?!typedef\b)(.+?)\b(iobus_\w+)\s*\((.*)\)", statement)
        if not match:
            continue
        result, name, params = match.groups()
        types = []
        for param in params.split(","):
            param = param.strip()
            if param in ("", "void"):
                continue
            types.append(re.sub(r"\s*\b\w+$", "", param).strip())
        found[name] = (result.strip(), types)
    return found


def callback_typedefs() -> set:
    return set(re.findall(r"typedef\s+[\w\s\*]+\(\s*\*\s*(\w+)\s*\)", CODE))


_C_INTEGERS = {
    "size_t": (ctypes.sizeof(ctypes.c_size_t), False),
    "uint8_t": (1, False),
    "uint16_t": (2, False),
    "uint32_t": (4, False),
    "uint64_t": (8, False),
    "int32_t": (4, True),
    "int": (ctypes.sizeof(ctypes.c_int), True),
}


def c_kind(c_type: str, callbacks: set) -> Any:
    """How a C type travels: "void", "pointer", "bool", or (size, signed)."""
    c_type = c_type.replace("const ", "").strip()
    if c_type == "void":
        return "void"
    if "*" in c_type or c_type in callbacks:
        return "pointer"
    if c_type == "bool":
        return "bool"
    if c_type.startswith("enum "):
        return (ctypes.sizeof(ctypes.c_int), True)  # C enums are ints
    assert c_type in _C_INTEGERS, f"unknown C type {c_type!r}"
    return _C_INTEGERS[c_type]


_POINTERS = (ctypes._Pointer, ctypes._CFuncPtr)  # type: ignore[attr-defined]


def ctypes_kind(t: Any) -> Any:
    """How a ctypes type travels, in ``c_kind``'s terms."""
    if t is None:
        return "void"
    if t is ctypes.c_bool:
        return "bool"
    if t in (ctypes.c_void_p, ctypes.c_char_p) or issubclass(t, _POINTERS):
        return "pointer"
    signed = t(-1).value == -1
    return (ctypes.sizeof(t), signed)


def test_every_function_the_binding_calls_matches_its_declaration():
    declared = header_functions()
    callbacks = callback_typedefs()
    assert "iobus_server_poll_records" in declared, "the header's declarations were not found"
    wrong = []
    for name, (restype, argtypes) in sorted(n.PROTOTYPES.items()):
        if name not in declared:
            wrong.append(f"{name}: not declared in iobus.h")
            continue
        result, params = declared[name]
        if len(params) != len(argtypes):
            wrong.append(f"{name}: {len(argtypes)} arguments in the binding, {len(params)} in iobus.h")
            continue
        if c_kind(result, callbacks) != ctypes_kind(restype):
            wrong.append(f"{name}: returns {result} in iobus.h, {restype} in the binding")
        for i, (c_type, t) in enumerate(zip(params, argtypes)):
            if c_kind(c_type, callbacks) != ctypes_kind(t):
                wrong.append(f"{name}: argument {i + 1} is {c_type} in iobus.h, {t.__name__} in the binding")
            # The binding passes no C callback: only where the header says
            # a NULL callback is allowed (poll mode: the completion is a record).
            if c_type.replace("const ", "").strip() in callbacks and not re.search(r"`cb` may be NULL", doc_of(name)):
                wrong.append(f"{name}: the binding passes NULL for its {c_type}, which iobus.h does not allow")
    assert not wrong, "\n".join(wrong)
