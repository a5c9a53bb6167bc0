//! XEP-0004 Data Forms (`jabber:x:data`): the subset used by pubsub node configuration,
//! publish-options and XEP-0128 extended disco information — a form type and its fields, each
//! with a `var`, an optional `type` and its values. Labels, descriptions, options and
//! `<required/>` are kept only as far as the server needs them (options are dropped).

use crate::util::{check, opt_attr};
use crate::{Element, ParseError, ns};

/// Most fields a form may carry (hostile input is bounded).
pub const MAX_FIELDS: usize = 64;
/// Most values one field may carry.
pub const MAX_VALUES: usize = 256;

/// One `<field/>` of a form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Field {
    /// The `var` attribute (absent only on `fixed` fields).
    pub var: Option<String>,
    /// The `type` attribute (`boolean`, `list-single`, `text-single`, `hidden`, ...).
    pub type_: Option<String>,
    /// The `label` attribute.
    pub label: Option<String>,
    /// The `<value/>`s, in order.
    pub values: Vec<String>,
}

impl Field {
    /// A field with one value.
    pub fn new(var: impl Into<String>, type_: Option<&str>, value: impl Into<String>) -> Field {
        Field { var: Some(var.into()), type_: type_.map(str::to_owned), label: None, values: vec![value.into()] }
    }

    /// The first value, if any.
    pub fn value(&self) -> Option<&str> {
        self.values.first().map(String::as_str)
    }
}

/// A data form: `<x xmlns='jabber:x:data' type=..>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataForm {
    /// `form`, `submit`, `result` or `cancel`.
    pub type_: String,
    /// The fields, in document order (the `FORM_TYPE` field included).
    pub fields: Vec<Field>,
}

impl DataForm {
    /// A form of this type with a hidden `FORM_TYPE` field.
    pub fn new(type_: &str, form_type: &str) -> DataForm {
        DataForm { type_: type_.to_owned(), fields: vec![Field::new("FORM_TYPE", Some("hidden"), form_type)] }
    }

    /// The value of the `FORM_TYPE` field, if any.
    pub fn form_type(&self) -> Option<&str> {
        self.field("FORM_TYPE").and_then(Field::value)
    }

    /// The field named `var`.
    pub fn field(&self, var: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.var.as_deref() == Some(var))
    }

    /// Builder-style: add a field.
    pub fn with_field(mut self, f: Field) -> DataForm {
        self.fields.push(f);
        self
    }
}

impl TryFrom<&Element> for DataForm {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "x", ns::DATA_FORMS)?;
        let type_ = e.attr("type").ok_or(ParseError::MissingAttr("type"))?;
        if !matches!(type_, "form" | "submit" | "result" | "cancel") {
            return Err(ParseError::bad_value("type", type_));
        }
        let mut form = DataForm { type_: type_.to_owned(), fields: Vec::new() };
        for f in e.elements().filter(|c| c.is("field", ns::DATA_FORMS)) {
            if form.fields.len() >= MAX_FIELDS {
                return Err(ParseError::ChildCount("too many form fields"));
            }
            let var = opt_attr(f, "var");
            let type_ = opt_attr(f, "type");
            if var.is_none() && type_.as_deref() != Some("fixed") {
                return Err(ParseError::MissingAttr("var"));
            }
            if let Some(v) = &var
                && form.fields.iter().any(|x| x.var.as_ref() == Some(v))
            {
                return Err(ParseError::Duplicate("field"));
            }
            let values: Vec<String> = f.elements().filter(|c| c.is("value", ns::DATA_FORMS)).map(Element::text).collect();
            if values.len() > MAX_VALUES {
                return Err(ParseError::ChildCount("too many field values"));
            }
            form.fields.push(Field { var, type_, label: opt_attr(f, "label"), values });
        }
        Ok(form)
    }
}

impl From<DataForm> for Element {
    fn from(f: DataForm) -> Element {
        let mut x = Element::new("x", ns::DATA_FORMS).with_attr("type", f.type_);
        for field in f.fields {
            let mut fe = Element::new("field", ns::DATA_FORMS);
            if let Some(v) = field.var {
                fe.set_attr("var", v);
            }
            if let Some(t) = field.type_ {
                fe.set_attr("type", t);
            }
            if let Some(l) = field.label {
                fe.set_attr("label", l);
            }
            for v in field.values {
                fe = fe.with_child(Element::new("value", ns::DATA_FORMS).with_text(v));
            }
            x = x.with_child(fe);
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let form = DataForm::new("submit", "http://jabber.org/protocol/pubsub#node_config")
            .with_field(Field::new("pubsub#access_model", Some("list-single"), "open"))
            .with_field(Field { var: Some("pubsub#roster_groups_allowed".into()), type_: None, label: Some("Groups".into()), values: vec!["a".into(), "b".into()] });
        let el: Element = form.clone().into();
        let back = DataForm::try_from(&el).unwrap();
        assert_eq!(back, form);
        assert_eq!(back.form_type(), Some("http://jabber.org/protocol/pubsub#node_config"));
        assert_eq!(back.field("pubsub#access_model").and_then(Field::value), Some("open"));
    }

    #[test]
    fn invalid() {
        assert!(DataForm::try_from(&Element::new("x", ns::DATA_FORMS)).is_err());
        assert!(DataForm::try_from(&Element::new("x", ns::DATA_FORMS).with_attr("type", "weird")).is_err());
        assert!(DataForm::try_from(&Element::new("y", ns::DATA_FORMS).with_attr("type", "form")).is_err());
        let no_var = Element::new("x", ns::DATA_FORMS).with_attr("type", "submit").with_child(Element::new("field", ns::DATA_FORMS));
        assert_eq!(DataForm::try_from(&no_var), Err(ParseError::MissingAttr("var")));
        let dup = Element::new("x", ns::DATA_FORMS)
            .with_attr("type", "submit")
            .with_child(Element::new("field", ns::DATA_FORMS).with_attr("var", "a"))
            .with_child(Element::new("field", ns::DATA_FORMS).with_attr("var", "a"));
        assert_eq!(DataForm::try_from(&dup), Err(ParseError::Duplicate("field")));
        let mut many = Element::new("x", ns::DATA_FORMS).with_attr("type", "submit");
        for i in 0..=MAX_FIELDS {
            many = many.with_child(Element::new("field", ns::DATA_FORMS).with_attr("var", format!("f{i}")));
        }
        assert!(DataForm::try_from(&many).is_err());
    }
}
