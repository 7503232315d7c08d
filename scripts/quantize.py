"""Dynamic int8 quantisation of an ONNX model with onnxruntime's quantiser: MatMul weights
stored as int8 (per output channel), activations quantised at run time. Graph outputs (every
hidden layer) are kept.

    python scripts/quantize.py MODEL.onnx MODEL-int8.onnx
"""

import sys

from onnxruntime.quantization import QuantType, quantize_dynamic


def main():
    src, dst = sys.argv[1], sys.argv[2]
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"])


if __name__ == "__main__":
    main()
