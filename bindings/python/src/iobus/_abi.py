"""The numbers of libiobus's C ABI as the binding uses them: status codes,
ack statuses, dispatch modes, Redis modes, record kinds, flags, the NUL-terminated
length convention, and the layout of the records
``iobus_server_poll_records`` writes. (The ``iobus_selection`` structure is
a ctypes ``Structure`` in ``_native``.)

``include/iobus.h`` is where these are defined; this module mirrors it under
one naming rule, so that ``tests/test_abi.py`` checks it against the header
mechanically:

- every integer constant here is the header's name without ``IOBUS_``
  (``ERR_UNKNOWN_SOCKET`` is ``IOBUS_ERR_UNKNOWN_SOCKET``), and every integer
  constant of the header (enumerators and ``#define`` flags, the version
  macros aside) has its mirror here;
- the record header and the fields of each record kind are listed in the
  order and with the words of the tables in the header's comment above
  ``iobus_server_poll_records``, and the ``struct`` formats the reader
  uses are built from those lists.

Nothing here knows about Socket.IO or ctypes.
"""

from __future__ import annotations

import struct
from ctypes import c_size_t
from typing import Dict, NamedTuple, Optional, Tuple

# ---- iobus_status ------------------------------------------------------------------

OK = 0
ERR_NULL_ARGUMENT = 1
ERR_INVALID_UTF8 = 2
ERR_INVALID_JSON = 3
ERR_INVALID_ARGUMENT = 4
ERR_UNKNOWN_SOCKET = 5
ERR_NOT_RUNNING = 6
ERR_ALREADY_RUNNING = 7
ERR_IO = 8
ERR_RESERVED_EVENT = 9
ERR_INVALID_BINARY = 10
ERR_WRONG_STATE = 11
ERR_DISCONNECTED = 12
ERR_PANIC = 13

# ---- iobus_ack_status: how an emit-with-ack ended ----------------------------------

ACK_OK = 0
ACK_TIMEOUT = 1
ACK_DISCONNECTED = 2

# ---- iobus_dispatch: where callbacks run --------------------------------------------

DISPATCH_THREAD = 0
DISPATCH_POLL = 1

# ---- iobus_redis_mode: how nodes talk through Redis ---------------------------------

REDIS_PUBSUB = 0
REDIS_PUBSUB_OWN_RESPONSE_CHANNEL = 1
REDIS_STREAMS = 2

# ---- iobus_record_kind: what a record describes -------------------------------------

RECORD_CONNECT = 0
RECORD_EVENT = 1
RECORD_DISCONNECT = 2
RECORD_ACK = 3
RECORD_BROADCAST_ACK = 4
RECORD_SOCKETS = 5
RECORD_ROOMS = 6
RECORD_SERVER_SIDE_EMIT = 7

# ---- flags (#define) --------------------------------------------------------------------

SELECTION_VOLATILE = 1
SELECTION_LOCAL = 2

# ---- lengths ------------------------------------------------------------------------------

# The C SIZE_MAX of this platform; as the length of JSON text it means
# "NUL-terminated, measure it yourself".
SIZE_MAX = c_size_t(-1).value
JSON_NUL_TERMINATED = SIZE_MAX

# ---- records (iobus_server_poll_records) ---------------------------------------------
#
# Host byte order, no padding: hence "=" in the struct formats.

# The record header, item by item: what the header's comment calls it, and
# its struct code ("x" per zero byte).
RECORD_HEADER_ITEMS: Tuple[Tuple[str, str], ...] = (
    ("size", "I"),
    ("kind", "B"),
    ("status", "B"),
    ("zero", "xx"),
    ("user data", "Q"),
    ("handle or number", "Q"),
)
RECORD_HEADER = struct.Struct("=" + "".join(code for _, code in RECORD_HEADER_ITEMS))

# Every field, and the count of attachments, starts with this length.
RECORD_FIELD_LEN = struct.Struct("=I")

# The status byte of a CONNECT record that recovers a dropped socket
# (connection state recovery; ``iobus_connect_recovered``).
CONNECT_RECOVERED = 1


class RecordFields(NamedTuple):
    """One record kind after the header: what its handle-or-number is
    (``"connect"``: the ``iobus_connect *`` to answer, ``"ack"``: an
    ``iobus_ack *`` or 0, ``"count"``: a number, ``None``: always 0), the
    names of its fields as the header lists them, then (``attachments``) a
    ``u32`` count of attachments and each one as a field."""

    handle: Optional[str]
    names: Tuple[str, ...]
    attachments: bool


RECORD_FIELDS: Dict[int, RecordFields] = {
    RECORD_CONNECT: RecordFields("connect", ("namespace", "socket id", "handshake JSON"), False),
    RECORD_EVENT: RecordFields("ack", ("namespace", "socket id", "event name", "arguments JSON"), True),
    RECORD_DISCONNECT: RecordFields(None, ("namespace", "socket id", "reason", "rooms JSON"), False),
    RECORD_ACK: RecordFields(None, ("namespace", "socket id", "arguments JSON of the reply"), True),
    RECORD_BROADCAST_ACK: RecordFields("count", ("replies JSON",), True),
    RECORD_SOCKETS: RecordFields(None, ("sockets JSON",), False),
    RECORD_ROOMS: RecordFields(None, ("rooms JSON",), False),
    RECORD_SERVER_SIDE_EMIT: RecordFields(
        "ack", ("namespace", "socket id", "event name", "arguments JSON"), True
    ),
}
