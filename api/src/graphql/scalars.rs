//! Custom scalars.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

/// An amount in the asset's minor units (satoshis or drops), as a decimal string
/// because it can exceed JavaScript's safe integers. Input may also be an integer;
/// range and sign are checked by the mutation so that errors carry
/// `BAD_USER_INPUT` with the field name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinorUnits(pub String);

#[Scalar(name = "MinorUnits")]
impl ScalarType for MinorUnits {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(s) => Ok(MinorUnits(s)),
            Value::Number(n) => Ok(MinorUnits(n.to_string())),
            other => Err(InputValueError::custom(format!(
                "expected a decimal string of minor units, got {other}"
            ))),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

impl From<u64> for MinorUnits {
    fn from(v: u64) -> Self {
        MinorUnits(v.to_string())
    }
}
