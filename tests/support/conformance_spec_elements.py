"""Node cases with Cast elements the ONNX spec decides, not onnx's reference (one visible list).

onnx computes the expected outputs of its node cases with numpy and ml_dtypes. In the cases below some
elements are ones where that is not the spec: float -> integer out of range is undefined by the spec
(the reference's value changed with ml_dtypes 0.7), and NaN -> float4e2m1 is 6 by docs/technical/float4.md.
workbench.onnx_to_jax.node_suite.run_case compares such a case in two parts: every other element with the
reference as usual (exactly for integers), and these elements exactly with the spec's value or, where the
spec has none, with the generated code's documented result: truncate toward zero, saturate to the type's
range, NaN -> 0 (docs/codegen.md "Cast"). So the suite holds with ml_dtypes 0.5, 0.6 and 0.7 alike.
tests/test_onnx_conformance.py checks that this list names exactly the cases that have such elements.
"""

SPEC_ELEMENTS: dict[str, str] = {
    'test_cast_FLOAT_to_INT4': "undefined: -9.0 and 8.0 ... 15.0 do not fit int4 (onnx's reference: 7 and -8 ... -1 with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: -8 and 7",
    'test_cast_FLOAT16_to_INT4': "undefined: -9.0 and 8.0 ... 15.0 do not fit int4 (onnx's reference: 7 and -8 ... -1 with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: -8 and 7",
    'test_cast_FLOAT_to_UINT4': 'undefined: -9.0 ... -1.0 do not fit uint4 (reference: 7 ... 15 with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: 0',
    'test_cast_FLOAT16_to_UINT4': 'undefined: -9.0 ... -1.0 do not fit uint4 (reference: 7 ... 15 with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: 0',
    'test_cast_FLOAT_to_INT2': 'undefined: -3.0, 2.0 and 3.0 do not fit int2 (reference: wrapped with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: -2 and 1',
    'test_cast_FLOAT16_to_INT2': 'undefined: -3.0, 2.0 and 3.0 do not fit int2 (reference: wrapped with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: -2 and 1',
    'test_cast_FLOAT_to_UINT2': 'undefined: -3.0 ... -1.0 do not fit uint2 (reference: wrapped with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: 0',
    'test_cast_FLOAT16_to_UINT2': 'undefined: -3.0 ... -1.0 do not fit uint2 (reference: wrapped with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: 0',
    'test_cast_FLOAT_to_FLOAT4E2M1': "NaN: the spec (float4.md) says 6, the reference gives ml_dtypes' +-0; compared with 6",
    'test_cast_FLOAT16_to_FLOAT4E2M1': "NaN: the spec (float4.md) says 6, the reference gives ml_dtypes' +-0; compared with 6",
    'test_castlike_FLOAT_to_INT4': "undefined: -9.0 and 8.0 ... 15.0 do not fit int4 (onnx's reference: 7 and -8 ... -1 with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: -8 and 7",
    'test_castlike_FLOAT_to_INT4_expanded': "undefined: -9.0 and 8.0 ... 15.0 do not fit int4 (onnx's reference: 7 and -8 ... -1 with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: -8 and 7",
    'test_castlike_FLOAT16_to_INT4': "undefined: -9.0 and 8.0 ... 15.0 do not fit int4 (onnx's reference: 7 and -8 ... -1 with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: -8 and 7",
    'test_castlike_FLOAT16_to_INT4_expanded': "undefined: -9.0 and 8.0 ... 15.0 do not fit int4 (onnx's reference: 7 and -8 ... -1 with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: -8 and 7",
    'test_castlike_FLOAT_to_UINT4': 'undefined: -9.0 ... -1.0 do not fit uint4 (reference: 7 ... 15 with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: 0',
    'test_castlike_FLOAT_to_UINT4_expanded': 'undefined: -9.0 ... -1.0 do not fit uint4 (reference: 7 ... 15 with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: 0',
    'test_castlike_FLOAT16_to_UINT4': 'undefined: -9.0 ... -1.0 do not fit uint4 (reference: 7 ... 15 with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: 0',
    'test_castlike_FLOAT16_to_UINT4_expanded': 'undefined: -9.0 ... -1.0 do not fit uint4 (reference: 7 ... 15 with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: 0',
    'test_castlike_FLOAT_to_INT2': 'undefined: -3.0, 2.0 and 3.0 do not fit int2 (reference: wrapped with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: -2 and 1',
    'test_castlike_FLOAT_to_INT2_expanded': 'undefined: -3.0, 2.0 and 3.0 do not fit int2 (reference: wrapped with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: -2 and 1',
    'test_castlike_FLOAT16_to_INT2': 'undefined: -3.0, 2.0 and 3.0 do not fit int2 (reference: wrapped with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: -2 and 1',
    'test_castlike_FLOAT16_to_INT2_expanded': 'undefined: -3.0, 2.0 and 3.0 do not fit int2 (reference: wrapped with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: -2 and 1',
    'test_castlike_FLOAT_to_UINT2': 'undefined: -3.0 ... -1.0 do not fit uint2 (reference: wrapped with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: 0',
    'test_castlike_FLOAT_to_UINT2_expanded': 'undefined: -3.0 ... -1.0 do not fit uint2 (reference: wrapped with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: 0',
    'test_castlike_FLOAT16_to_UINT2': 'undefined: -3.0 ... -1.0 do not fit uint2 (reference: wrapped with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: 0',
    'test_castlike_FLOAT16_to_UINT2_expanded': 'undefined: -3.0 ... -1.0 do not fit uint2 (reference: wrapped with ml_dtypes 0.5/0.6, 0 with 0.7); compared with saturation: 0',
    'test_castlike_FLOAT_to_FLOAT4E2M1': "NaN: the spec (float4.md) says 6, the reference gives ml_dtypes' +-0; compared with 6",
    'test_castlike_FLOAT_to_FLOAT4E2M1_expanded': "NaN: the spec (float4.md) says 6, the reference gives ml_dtypes' +-0; compared with 6",
    'test_castlike_FLOAT16_to_FLOAT4E2M1': "NaN: the spec (float4.md) says 6, the reference gives ml_dtypes' +-0; compared with 6",
    'test_castlike_FLOAT16_to_FLOAT4E2M1_expanded': "NaN: the spec (float4.md) says 6, the reference gives ml_dtypes' +-0; compared with 6",
}
