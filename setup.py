"""tf_cvae: VAEs that do not collapse, with contrastive critics (Menon et al., UAI 2022)."""
import setuptools

setuptools.setup(
    name="tf_cvae",
    version="0.1.0",
    description=("Variational autoencoders with contrastive critics against "
                 "posterior collapse (TensorFlow 2, Keras 3, TFP)."),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["tf_cvae", "tf_cvae.*"]),
    python_requires=">=3.10",
    # Lower bounds only: on Colab the preinstalled TensorFlow must stay.
    install_requires=[
        "tensorflow>=2.16",
        "tensorflow-probability[tf]>=0.24",
        "tensorflow-datasets>=4.9",
        "absl-py>=1.0",
        "numpy>=1.23",
    ],
    extras_require={
        "test": ["pytest>=7", "matplotlib>=3.5"],
        # The notebook's latent plot (notebooks/colab_quickstart.ipynb).
        "plots": ["matplotlib>=3.5"],
        # CUDA wheels for a machine without a preinstalled GPU TensorFlow.
        "gpu": ["tensorflow[and-cuda]>=2.16"],
    },
)
