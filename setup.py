from setuptools import find_packages, setup

EDGE = ["pyserial>=3.5", "ai-edge-litert>=2.0", "prometheus-client>=0.20", "matplotlib>=3.7"]

setup(
    name="inspection-station",
    version="0.1.0",
    description="Edge inspection station: Attention U-Net defect segmentation, int8 TFLite, reject gate over serial",
    python_requires=">=3.10",
    packages=find_packages(include=["edge", "edge.*", "training", "training.*", "quantize", "quantize.*"]),
    package_data={"edge.sinks": ["static/*.html"], "edge.inference.models": ["*.tflite", "*.json"]},
    install_requires=["numpy>=1.26", "opencv-python-headless>=4.8", "pyyaml>=6", "pydantic>=2", "tqdm>=4.66"],
    extras_require={
        "edge": EDGE,
        "train": EDGE + ["keras>=3.6", "tensorflow-cpu>=2.18; platform_machine == 'x86_64'",
                         "tensorflow>=2.18; platform_machine != 'x86_64'"],
        "modbus": ["pymodbus>=3.9"],
        "mqtt": ["paho-mqtt>=2.0"],
        "opcua": ["asyncua>=1.1"],
        "openvino": ["openvino>=2024.0"],
        "dev": ["pytest>=8", "pymodbus>=3.9", "paho-mqtt>=2.0", "selenium>=4.20", "asyncua>=1.1", "openvino>=2024.0"],
    },
    entry_points={"console_scripts": ["station = edge.cli:main"]},
)
