import gzip
import os
import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message=".*ccache.*")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MOVIEREC_DATA_DIR", REPO.parent / "shared" / "data"))
ML100K = SHARED_DATA / "ml-100k"


def write_text(path: Path, text: str, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("latin-1")
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.fixture(autouse=True)
def _work_in_a_temporary_directory(tmp_path, monkeypatch):
    """Commands default to movierec-work/ in the working directory (bundles, the event store):
    each test's defaults go to a directory of its own, never into the checkout."""
    monkeypatch.chdir(tmp_path)


ML1M_USERS = "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n"
ML1M_MOVIES = (
    "1::Toy Story (1995)::Animation|Children's|Comedy\n"
    "2::Jumanji (1995)::Adventure|Children's|Fantasy\n"
    "3::Caf\xe9 au lait (1993)::Comedy\n"
    "4::Never Rated (1990)::Drama\n"
)


@pytest.fixture
def ml1m_dir(tmp_path):
    """A tiny ML-1M release, gzip'd like shared/data, with one malformed ratings line."""
    root = tmp_path / "ml-1m"
    write_text(root / "users.dat", ML1M_USERS, gz=True)
    write_text(root / "movies.dat", ML1M_MOVIES, gz=True)
    write_text(root / "ratings.dat", (
        "1::1::5::100\n1::2::3::100\n1::3::4::50\n"
        "2::1::4::10\n2::3::x::11\n2::2::2::12\n"
        "3::2::5::7\n3::9::4::8\n3::1::1::9\n3::3::3::9\n"
    ), gz=True)
    return root


@pytest.fixture(scope="session")
def ml100k_dataset(tmp_path_factory):
    """The real ML-100K, normalised once per test session."""
    if not (ML100K / "u.data.gz").is_file():
        pytest.skip(f"ML-100K not found under {ML100K}")
    from movierec.dataset.readers import read_release
    from movierec.dataset.store import load_dataset, write_dataset

    out = tmp_path_factory.mktemp("data") / "ml-100k"
    release = read_release(ML100K)
    write_dataset(release, out, source=str(ML100K), source_files=release.files)
    return load_dataset(out)


@pytest.fixture(scope="session")
def trained_runs(ml100k_dataset, tmp_path_factory):
    """Tiny SASRec and NCF runs on ML-100K (1 epoch each; plumbing, not quality), NCF with
    random poster vectors for every other movie."""
    import numpy as np

    from movierec.dataset.evaluation import build_task
    from movierec.dataset.sequences import chronological, leave_last_out
    from movierec.dataset.posters import PosterVectors
    from movierec.models.ncf.config import NCFConfig
    from movierec.models.ncf.model import Features
    from movierec.models.ncf.training import POSTERS_FILE, train_ncf
    from movierec.models.sasrec.config import SASRecConfig
    from movierec.models.sasrec.training import train_sasrec

    root = tmp_path_factory.mktemp("runs")
    sequences = chronological(ml100k_dataset.ratings, ml100k_dataset.num_users)
    split = leave_last_out(sequences)
    task = build_task(split, "valid", sequences, ml100k_dataset.num_items)
    train_sasrec(split.train, ml100k_dataset.num_items,
                 SASRecConfig(maxlen=50, hidden=16, epochs=1, loss="ce"), root / "sasrec", task)
    with_poster = ml100k_dataset.items.raw_id.to_numpy()[::2]
    posters = PosterVectors(with_poster, np.random.default_rng(0).random((len(with_poster), 12)).astype(np.float32))
    (root / "ncf").mkdir()
    posters.save(root / "ncf" / POSTERS_FILE)
    train_ncf(split.train, Features.from_dataset(ml100k_dataset, posters), NCFConfig(epochs=1), root / "ncf", task)
    return root / "sasrec", root / "ncf"


@pytest.fixture(scope="session")
def bundle_root(ml100k_dataset, trained_runs, tmp_path_factory):
    from movierec.bundle.builder import BuildOptions, build_bundle

    root = tmp_path_factory.mktemp("bundles")
    build_bundle(BuildOptions(ml100k_dataset.path, trained_runs[0], trained_runs[1], root))
    return root


def second_version(root: Path, name: str) -> Path:
    """A copy of the current bundle under another version name (a valid bundle)."""
    import json
    import shutil

    from movierec.bundle.layout import current_version

    target = root / name
    shutil.copytree(current_version(root), target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["version"] = name
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


class LiveServer:
    """A real server on a loopback port, run by an event loop in a background thread."""

    def __init__(self, config):
        import asyncio
        import threading

        from movierec.server.app import start

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.running = asyncio.run_coroutine_threadsafe(start(config), self.loop).result(timeout=120)
        self.target = f"127.0.0.1:{self.running.port}"

    def stop(self, grace: float = 2.0):
        import asyncio

        asyncio.run_coroutine_threadsafe(self.running.stop(grace), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def served_root(bundle_root, tmp_path_factory):
    """A private copy of the bundle root, with a second version to switch to."""
    import shutil

    root = tmp_path_factory.mktemp("served") / "bundles"
    shutil.copytree(bundle_root, root, symlinks=True)
    second_version(root, "v99999999-000000-second")
    return root


@pytest.fixture(scope="module")
def server(served_root):
    from movierec.server.app import ServerConfig

    live = LiveServer(ServerConfig(bundles=served_root, address="127.0.0.1:0", metrics_port=0, watch_interval=0.5))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def stub(server):
    import grpc

    from movierec.server.v1 import recommender_pb2_grpc as pb_grpc

    with grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.RecommenderStub(channel)


def certificates(tmp_path: Path) -> dict:
    """PEM files made for a test: a CA with a server certificate (localhost, 127.0.0.1) and a
    client certificate, and a second CA (the admin CA) with a client certificate of its own."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def make(name, issuer_key=None, issuer_name=None, ca=False, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name or subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return key, builder.sign(issuer_key or key, hashes.SHA256())

    ca_key, ca_cert = make("movierec test CA", ca=True)
    admin_ca_key, admin_ca_cert = make("movierec test admin CA", ca=True)
    made = {
        "ca": (None, ca_cert),
        "admin_ca": (None, admin_ca_cert),
        "server": make("localhost", ca_key, ca_cert.subject,
                       san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        "client": make("client", ca_key, ca_cert.subject),
        "admin_client": make("operator", admin_ca_key, admin_ca_cert.subject),
    }
    paths = {}
    for name, (key, cert) in made.items():
        paths[name] = tmp_path / f"{name}.pem"
        paths[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            paths[f"{name}_key"] = tmp_path / f"{name}_key.pem"
            paths[f"{name}_key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                               serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption()))
    return paths
