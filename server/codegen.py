"""Generate the gRPC Python stubs from proto/ (reproducibly, with the pinned grpcio-tools).

    python -m movierec.server.codegen            # rewrite server/v1/*_pb2*.py
    python -m movierec.server.codegen --check    # exit 1 if the committed stubs are stale
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parents[1] / "proto"
PROTO = "movierec/v1/recommender.proto"
OUT_DIR = Path(__file__).resolve().parent / "v1"
GENERATED = ("recommender_pb2.py", "recommender_pb2_grpc.py", "recommender_pb2.pyi")
# protoc writes imports by proto path (movierec.v1); the stubs live in movierec.server.v1.
IMPORT_FROM, IMPORT_TO = "from movierec.v1 import", "from movierec.server.v1 import"


def generate() -> dict[str, str]:
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"--python_out={tmp}", f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}", str(PROTO_ROOT / PROTO)]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed")
        out = Path(tmp) / "movierec" / "v1"
        return {name: (out / name).read_text().replace(IMPORT_FROM, IMPORT_TO) for name in GENERATED}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    files = generate()
    if args.check:
        stale = [name for name, text in files.items()
                 if not (OUT_DIR / name).is_file() or (OUT_DIR / name).read_text() != text]
        if stale:
            print(f"stale generated stubs: {', '.join(stale)}; run python -m movierec.server.codegen")
            return 1
        print("generated stubs are up to date")
        return 0
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / "__init__.py").write_text('"""Generated gRPC stubs of proto/movierec/v1 (see server/codegen.py)."""\n')
    for name, text in files.items():
        (OUT_DIR / name).write_text(text)
    print(f"wrote {', '.join(files)} to {OUT_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
