"""xlmr: pretrain XLM-R style cross-lingual masked language models with fairseq.

fairseq 0.12.2 does not install on Python >= 3.11; there the maintained 0.12 fork
`fairseq-fixed` provides the same `fairseq` package.
"""
from setuptools import find_packages, setup

setup(
    name="xlmr",
    version="0.1.0",
    description="XLM-R pretraining toolkit: data preparation, a fairseq plugin and SLURM launchers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["xlmr_plugin*", "preprocess*", "slurm*", "analysis*"]),
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
            "xlmr-prepare=preprocess.prepare:main",
            "xlmr-demo-corpus=preprocess.manpages:main",
            "xlmr-train=slurm.train:main",
            "xlmr-sweep=slurm.sweep:main",
            "xlmr-export-hf=xlmr_plugin.hf_cli:main_export",
            "xlmr-import-hf=xlmr_plugin.hf_cli:main_import",
            "xlmr-eval-ppl=xlmr_plugin.eval_ppl:main",
            "xlmr-report=analysis.report:main",
            "xlmr-xnli=xlmr_plugin.downstream.xnli_cli:main",
            "xlmr-probe-data=xlmr_plugin.downstream.probe_data:main",
            "xlmr-ner=xlmr_plugin.downstream.ner_cli:main",
            "xlmr-mlqa=xlmr_plugin.downstream.mlqa:main",
        ],
    },
)
