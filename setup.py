"""tf_cvae: VAEs that do not collapse, with contrastive critics (Menon et al., UAI 2022)."""
import setuptools

# Console commands: tf-cvae-<name> runs tf_cvae_runners.<name>.main.
COMMANDS = ("train", "evaluate", "export", "encode", "sample", "compare",
            "benchmark", "quickstart")

setuptools.setup(
    name="tf_cvae",
    version="0.1.0",
    description=("Variational autoencoders with contrastive critics against "
                 "posterior collapse (TensorFlow 2, Keras 3, TFP)."),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # Two packages: tf_cvae, the library, which never reads flags, and
    # tf_cvae_runners (the folder runners/), the commands. The presets are
    # flags/*.cfg, shipped as the package data of tf_cvae.presets
    # (tf_cvae_runners.presets finds them there, or in flags/ of a source
    # checkout and of an editable install).
    packages=(setuptools.find_packages(include=["tf_cvae", "tf_cvae.*"])
              + ["tf_cvae.presets", "tf_cvae_runners"]),
    package_dir={"tf_cvae.presets": "flags", "tf_cvae_runners": "runners"},
    package_data={"tf_cvae.presets": ["*.cfg"]},
    entry_points={"console_scripts": [
        f"tf-cvae-{name}=tf_cvae_runners.{name}:main" for name in COMMANDS]},
    python_requires=">=3.10",
    # Lower bounds only: on Colab the preinstalled TensorFlow must stay.
    install_requires=[
        "tensorflow>=2.16",
        "tensorflow-probability[tf]>=0.24",
        "tensorflow-datasets>=4.9",
        "absl-py>=1.0",
        "numpy>=1.23",
        "importlib_resources",   # tensorflow-datasets' builders read with it
    ],
    extras_require={
        "test": ["pytest>=7", "matplotlib>=3.5", "mkdocs>=1.5",
                 "mkdocstrings[python]>=0.24"],
        # experiments/reproduce.py's figures and the notebook's latent plot
        # (notebooks/colab_quickstart.ipynb).
        "plots": ["matplotlib>=3.5"],
        # `tensorboard --logdir runs` to view what runs write in tensorboard/.
        "tensorboard": ["tensorboard>=2.16"],
        # CUDA wheels for a machine without a preinstalled GPU TensorFlow.
        "gpu": ["tensorflow[and-cuda]>=2.16"],
    },
)
