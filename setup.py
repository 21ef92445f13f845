import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(r'__version__ = "([^"]+)"', Path("zCLI/version.py").read_text()).group(1)

setup(
    name="zCLI",
    version=VERSION,
    description="Apps declared in zUI YAML files, walked in a terminal or served over WebSocket.",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["zCLI", "zCLI.*", "zTestSuite", "zTestSuite.*"]),
    package_data={"zCLI": ["static/*", "apps/chat/web/*"]},
    install_requires=[
        "websockets>=13",
        "PyYAML>=6",
        "unittest-xml-reporting>=3.2",
        "PyJWT>=2.8",
        "httpx>=0.27",  # zChat's OpenAI-compatible bot
        "cryptography>=42",  # zNeighbourhood (OLAF): RSA-PSS, RSA-OAEP, AES-GCM
    ],
    extras_require={
        # zChat on PostgreSQL (--db postgresql://...) and the Redis client of issue 12
        "cluster": ["psycopg[binary]>=3.1", "psycopg-pool>=3.2", "redis>=5"],
        "test": [
            "playwright>=1.40",
            "hypothesis>=6",
            "cryptography>=42",
            "psycopg[binary]>=3.1",
            "psycopg-pool>=3.2",
            "redis>=5",
        ],
        "dev": ["ruff>=0.6", "mypy>=1.10", "types-PyYAML"],
        # zcli serve --fast (websocket.fast, on by default when installed): uvloop, orjson
        "fast": ["uvloop>=0.19", "orjson>=3.9"],
        "bench": ["picows>=1.6", "uvloop>=0.19", "orjson>=3.9"],  # bench/bridge.py
    },
    entry_points={
        "console_scripts": ["zcli = zCLI.cli:main"],
        "zcli.plugins": [
            "chat = zCLI.apps.chat",
            "tunnel = zCLI.apps.tunnel",
            "olaf = zCLI.apps.olaf",
        ],
    },
)
