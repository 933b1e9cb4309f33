"""xlmr: pretrain XLM-R style cross-lingual masked language models with fairseq.

fairseq 0.12.2 does not install on Python >= 3.11; there the maintained 0.12 fork
`fairseq-fixed` provides the same `fairseq` package.
"""
from setuptools import find_packages, setup

# The repository's role folders install under one namespace, `xlmr.<folder>`, so that no
# generic top-level name (`preprocess`, `slurm`, ...) lands in site-packages. The plugin
# keeps its own top-level name: fairseq's --user-dir imports a folder by its name.
ROLES = ("slurm", "preprocess", "downstream", "analysis")
PACKAGES = ["xlmr_plugin", *find_packages(include=["xlmr_plugin.*"])]
PACKAGE_DIR = {}
for role in ROLES:
    for sub in ["", *(f".{p}" for p in find_packages(where=role))]:
        PACKAGES.append(f"xlmr.{role}{sub}")
        PACKAGE_DIR[f"xlmr.{role}{sub}"] = role + sub.replace(".", "/")

setup(
    name="xlmr",
    version="0.1.0",
    description="XLM-R pretraining toolkit: data preparation, a fairseq plugin and SLURM launchers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    install_requires=[
        "torch>=2.0",
        "fairseq-fixed==0.12.3.1; python_version >= '3.11'",
        "fairseq>=0.12.2; python_version < '3.11'",
        "sentencepiece>=0.1.97",
        "submitit>=1.5",
        "numpy",
        "tqdm",
        "matplotlib",  # xlmr-report's figures
        "tensorboard",  # fairseq-train --tensorboard-logdir (torch.utils.tensorboard)
    ],
    extras_require={"test": ["pytest>=7"], "hf": ["transformers>=4.40", "safetensors", "protobuf"]},
    entry_points={
        "console_scripts": [
            "xlmr-prepare=xlmr.preprocess.prepare:main",
            "xlmr-train=xlmr.slurm.train:main",
            "xlmr-recipe=xlmr_plugin.recipe_cli:main",
            "xlmr-sweep=xlmr.analysis.sweep:main",
            "xlmr-export-hf=xlmr_plugin.interop.hf_cli:main_export",
            "xlmr-import-hf=xlmr_plugin.interop.hf_cli:main_import",
            "xlmr-eval-ppl=xlmr_plugin.probing.eval_ppl:main",
            "xlmr-report=xlmr.analysis.report:main",
            "xlmr-xnli=xlmr.downstream.xnli_cli:main",
            "xlmr-probe-data=xlmr.downstream.probe_data:main",
            "xlmr-yardstick=xlmr_plugin.probing.yardstick:main",
            "xlmr-ner=xlmr.downstream.ner_cli:main",
            "xlmr-mlqa=xlmr.downstream.mlqa:main",
        ],
    },
)
