//! An MLflow model folder around an exported ONNX model: the `MLmodel` file with the `onnx`
//! and `python_function` flavors (loaded by `mlflow.pyfunc.load_model`) and a tensor
//! signature, and the pinned environment it was checked with.

/// The ONNX file's name in the folder.
pub const MODEL_FILE: &str = "model.onnx";
/// The versions `make test` loads the folder with (scripts/onnx-check-requirements.txt).
const MLFLOW: &str = "3.17.2";
const ONNX: &str = "1.23.2";
const ONNXRUNTIME: &str = "1.31.1";
const PYTHON: &str = "3.11";

/// Inputs and outputs: name, dtype, shape (-1 for any size).
#[derive(Debug)]
pub struct Signature {
    pub inputs: Vec<(String, &'static str, Vec<i64>)>,
    pub outputs: Vec<(String, &'static str, Vec<i64>)>,
}

fn specs(tensors: &[(String, &'static str, Vec<i64>)]) -> String {
    let specs: Vec<serde_json::Value> = tensors
        .iter()
        .map(|(name, dtype, shape)| {
            serde_json::json!({"name": name, "type": "tensor", "tensor-spec": {"dtype": dtype, "shape": shape}})
        })
        .collect();
    serde_json::to_string(&specs).expect("JSON values serialise")
}

/// Every file of the folder but the model: name and contents.
pub fn files(signature: &Signature) -> Vec<(&'static str, String)> {
    // YAML single-quoted scalars: a quote inside is doubled.
    let quoted = |s: String| format!("'{}'", s.replace('\'', "''"));
    let mlmodel = format!(
        "flavors:\n  onnx:\n    code: null\n    data: {MODEL_FILE}\n    onnx_session_options: null\n    onnx_version: {ONNX}\n    providers:\n    - CPUExecutionProvider\n  python_function:\n    data: {MODEL_FILE}\n    env:\n      conda: conda.yaml\n      virtualenv: python_env.yaml\n    loader_module: mlflow.onnx\n    python_version: '{PYTHON}'\nmlflow_version: {MLFLOW}\nsignature:\n  inputs: {}\n  outputs: {}\n  params: null\n",
        quoted(specs(&signature.inputs)),
        quoted(specs(&signature.outputs)),
    );
    let requirements = format!("mlflow=={MLFLOW}\nonnx=={ONNX}\nonnxruntime=={ONNXRUNTIME}\n");
    let python_env = format!(
        "python: '{PYTHON}'\nbuild_dependencies:\n- pip\n- setuptools\n- wheel\ndependencies:\n- -r requirements.txt\n"
    );
    let conda = format!(
        "channels:\n- conda-forge\ndependencies:\n- python={PYTHON}\n- pip\n- pip:\n  - mlflow=={MLFLOW}\n  - onnx=={ONNX}\n  - onnxruntime=={ONNXRUNTIME}\nname: mlflow-env\n"
    );
    vec![
        ("MLmodel", mlmodel),
        ("requirements.txt", requirements),
        ("python_env.yaml", python_env),
        ("conda.yaml", conda),
    ]
}
