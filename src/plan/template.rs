//! Handlebars templates of a plan (routing keys, payloads, headers): checked offline, rendered strictly.

use std::fmt;
use std::sync::Arc;

use handlebars::template::{Parameter, Template, TemplateElement};
use handlebars::{Handlebars, Path};

/// Helpers a template may call: handlebars' built-ins and `json`.
const HELPERS: &[&str] = &[
    "json", "if", "unless", "each", "with", "lookup", "eq", "ne", "gt", "gte", "lt", "lte", "and",
    "or", "not", "len",
];

/// Variable paths a template reads (`params.since`, `event.payload`), in order.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateInfo {
    pub variables: Vec<String>,
    pub helpers: Vec<String>,
}

/// Compiles a template and lists the variables and helpers it uses.
pub fn analyze(text: &str) -> Result<TemplateInfo, String> {
    let template = Template::compile(text).map_err(|e| first_line(&e))?;
    let mut info = TemplateInfo {
        variables: Vec::new(),
        helpers: Vec::new(),
    };
    walk(&template, &mut info);
    Ok(info)
}

/// handlebars' error without the source excerpt it appends.
fn first_line(e: &impl fmt::Display) -> String {
    let text = e.to_string();
    text.lines()
        .next()
        .unwrap_or("invalid template")
        .to_string()
}

/// Which template of a publish step (or of an http step: its URL, body, key and headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageField<'a> {
    RoutingKey,
    Payload,
    MessageId,
    Header(&'a str),
    Url,
    Body,
    IdempotencyKey,
}

/// A template's name in the plan's registry: its step's id and its field
/// (`republish.routing_key`, `republish.headers.x-tenant`). Step ids are unique and hold no `.`.
pub fn name(step: &str, field: MessageField<'_>) -> String {
    match field {
        MessageField::RoutingKey => format!("{step}.routing_key"),
        MessageField::Payload => format!("{step}.payload"),
        MessageField::MessageId => format!("{step}.message_id"),
        MessageField::Header(header) => format!("{step}.headers.{header}"),
        MessageField::Url => format!("{step}.url"),
        MessageField::Body => format!("{step}.body"),
        MessageField::IdempotencyKey => format!("{step}.idempotency_key"),
    }
}

/// Every template of a plan, compiled once into one strict registry (see [`registry`]); cheap to
/// clone, so each publish step renders from the same registry.
#[derive(Clone)]
pub struct Templates(Arc<Handlebars<'static>>);

impl Templates {
    /// Compiles each `(name, text)` into one registry; the first that does not compile is
    /// returned with its position in `texts` and the reason.
    pub fn compile<'a>(
        texts: impl IntoIterator<Item = (String, &'a str)>,
    ) -> Result<Templates, (usize, String)> {
        let mut registry = registry();
        for (i, (name, text)) in texts.into_iter().enumerate() {
            registry
                .register_template_string(&name, text)
                .map_err(|e| (i, first_line(&e)))?;
        }
        Ok(Templates(Arc::new(registry)))
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.has_template(name)
    }

    /// Renders a template of the plan, strictly: a missing variable is an error.
    pub fn render(
        &self,
        name: &str,
        data: &serde_json::Value,
    ) -> Result<String, handlebars::RenderError> {
        self.0.render(name, data)
    }
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.0.get_templates().keys().collect();
        names.sort();
        f.debug_tuple("Templates").field(&names).finish()
    }
}

/// Is `name` a helper templates may call?
pub fn is_known_helper(name: &str) -> bool {
    HELPERS.contains(&name)
}

fn walk(template: &Template, info: &mut TemplateInfo) {
    for element in &template.elements {
        match element {
            TemplateElement::Expression(h)
            | TemplateElement::HtmlExpression(h)
            | TemplateElement::HelperBlock(h) => {
                match &h.name {
                    Parameter::Name(name) => info.helpers.push(name.clone()),
                    Parameter::Path(path) if !h.params.is_empty() || h.block => {
                        info.helpers.push(path_text(path))
                    }
                    other => parameter(other, info),
                }
                h.params.iter().for_each(|p| parameter(p, info));
                h.hash.values().for_each(|p| parameter(p, info));
                if let Some(t) = &h.template {
                    walk(t, info);
                }
                if let Some(t) = &h.inverse {
                    walk(t, info);
                }
            }
            TemplateElement::DecoratorExpression(d)
            | TemplateElement::DecoratorBlock(d)
            | TemplateElement::PartialExpression(d)
            | TemplateElement::PartialBlock(d) => {
                if let Parameter::Name(name) | Parameter::Path(Path::Relative((_, name))) = &d.name
                {
                    info.helpers.push(format!("> {name}"));
                }
            }
            _ => {}
        }
    }
}

fn parameter(p: &Parameter, info: &mut TemplateInfo) {
    match p {
        Parameter::Path(path @ Path::Relative(_)) => info.variables.push(path_text(path)),
        Parameter::Subexpression(sub) => {
            info.helpers.push(sub.name().to_string());
            if let Some(params) = sub.params() {
                params.iter().for_each(|p| parameter(p, info));
            }
        }
        _ => {}
    }
}

fn path_text(path: &Path) -> String {
    match path {
        Path::Relative((_, raw)) => raw.replace('/', "."),
        Path::Local((_, name, _)) => format!("@{name}"),
    }
}

/// A registry for rendering: strict (a missing variable is an error), no HTML escaping, with `json`.
pub fn registry() -> Handlebars<'static> {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry.register_escape_fn(handlebars::no_escape);
    registry.register_helper(
        "json",
        Box::new(
            |h: &handlebars::Helper<'_>,
             _: &Handlebars<'_>,
             _: &handlebars::Context,
             _: &mut handlebars::RenderContext<'_, '_>,
             out: &mut dyn handlebars::Output|
             -> handlebars::HelperResult {
                let value = h.param(0).ok_or_else(|| {
                    handlebars::RenderErrorReason::ParamNotFoundForIndex("json", 0)
                })?;
                let text = serde_json::to_string(value.value())
                    .map_err(|e| handlebars::RenderErrorReason::Other(e.to_string()))?;
                out.write(&text)?;
                Ok(())
            },
        ),
    );
    registry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_and_helpers_are_listed() {
        let info =
            analyze("{{ event.event_type }}.{{ json event.payload }}{{#if params.x}}y{{/if}}")
                .unwrap();
        assert_eq!(
            info.variables,
            ["event.event_type", "event.payload", "params.x"]
        );
        assert_eq!(info.helpers, ["json", "if"]);
        assert!(analyze("{{ unclosed").is_err());
    }

    #[test]
    fn rendering_is_strict_and_unescaped() {
        let registry = registry();
        let data = serde_json::json!({"event": {"payload": {"a": "<b>"}}});
        assert_eq!(
            registry
                .render_template("{{ json event.payload }}", &data)
                .unwrap(),
            r#"{"a":"<b>"}"#
        );
        assert!(
            registry
                .render_template("{{ event.missing }}", &data)
                .is_err()
        );
    }
}
