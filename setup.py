import setuptools; setuptools.setup()
