"""``import millis_proto`` loads nothing but the package; every public name still resolves.

Each check runs in a fresh interpreter, since this process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def _run(code: str) -> object:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


def test_import_millis_proto_loads_no_submodule_and_not_wsproto() -> None:
    loaded = _run(
        """
        import json, sys
        before = set(sys.modules)
        import millis_proto
        print(json.dumps(sorted(set(sys.modules) - before)))
        """
    )
    assert isinstance(loaded, list)
    assert [m for m in loaded if m.startswith(("millis_proto", "wsproto", "h11"))] == [
        "millis_proto"
    ]
    assert not {"typing", "dataclasses", "json", "enum", "re"} & set(loaded)


def test_every_public_name_resolves_to_its_home_module() -> None:
    import importlib

    import millis_proto

    homes = millis_proto._SUBMODULE_NAMES
    assert sorted(n for names in homes.values() for n in names) == sorted(millis_proto.__all__)
    for module, names in homes.items():
        home = importlib.import_module(f"millis_proto.{module}")
        for name in names:
            assert getattr(millis_proto, name) is getattr(home, name), name
    assert set(millis_proto.__all__) <= set(dir(millis_proto))


def test_star_import_and_unknown_names() -> None:
    result = _run(
        """
        import json
        import millis_proto
        ns = {}
        exec("from millis_proto import *", ns)
        try:
            millis_proto.NoSuchThing
        except AttributeError as exc:
            error = str(exc)
        print(json.dumps({"names": sorted(k for k in ns if k != "__builtins__"),
                          "all": sorted(millis_proto.__all__), "error": error}))
        """
    )
    assert isinstance(result, dict)
    assert result["names"] == result["all"]
    assert "NoSuchThing" in result["error"]


def test_import_transports_trio_loads_no_serving_side_and_no_tls_of_ours() -> None:
    # trio itself imports ``ssl`` (its SSLStream), so the check is against a bare
    # ``import trio``: what transports.trio adds must not be the serving side, the local
    # agent, TLS streams or certificates.
    added = _run(
        """
        import json, sys
        import trio
        before = set(sys.modules)
        import transports.trio
        print(json.dumps(sorted(set(sys.modules) - before)))
        """
    )
    assert isinstance(added, list)
    assert "transports.trio" in added
    unwanted = (
        "ssl",
        "trustme",
        "transports.server",
        "transports.local_agent",
        "transports.load",
        "anyio.streams.tls",
        "millis_proto.agent",
    )
    assert not [m for m in added if any(m == u or m.startswith(u + ".") for u in unwanted)]


def test_import_wire_loads_no_url_parsing_and_compiles_no_method() -> None:
    # What a connecting program imports. urllib.parse (and ipaddress) load on the first URL
    # parsed; the ~40 frozen dataclasses are built without compiling anything
    # (millis_proto._frozen: __init__ compiles on the first construction of its class).
    result = _run(
        """
        import json
        import millis_proto.wire, millis_proto._frozen as frozen
        import transports.trio
        print(json.dumps({"compiled": len(frozen._INIT_FACTORIES)}))
        """
    )
    assert isinstance(result, dict)
    assert result["compiled"] == 0
    result = _run(
        """
        import json, sys
        import millis_proto.wire
        print(json.dumps(sorted(sys.modules)))
        """
    )
    assert isinstance(result, list)
    assert not {"urllib.parse", "ipaddress", "millis_proto.agent", "millis_proto.reconnect"} & set(
        result
    )
