//! The HTTP API of a running service, for the commands that talk to one
//! (`suppressions`, `backup`). The server comes from `--server`, `MAILWARDEN_URL` or
//! `http://127.0.0.1:8080`; the admin token from `--token`, `MAILWARDEN_ADMIN_TOKEN` or the
//! settings file, sent as a Bearer token.

use anyhow::{Context as _, bail};
use clap::Args;
use reqwest::{Client, Method, RequestBuilder, Url};
use serde_json::Value;

/// Server used when neither `--server` nor `MAILWARDEN_URL` is given.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Where the service is and how to authenticate to it.
#[derive(Args)]
pub struct ServerArgs {
    /// URL of the running service (default: MAILWARDEN_URL, else http://127.0.0.1:8080).
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
    /// Admin token (default: MAILWARDEN_ADMIN_TOKEN, else admin_token of the settings file).
    #[arg(long, global = true, value_name = "TOKEN")]
    token: Option<String>,
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// The HTTP API of one server.
pub struct Api {
    client: Client,
    base: Url,
    token: Option<String>,
}

impl Api {
    /// Resolves the server and token of `args` (see the module docs) and checks the URL.
    pub fn new(args: ServerArgs, configured_token: Option<&str>) -> anyhow::Result<Api> {
        let server = args
            .server
            .or_else(|| non_empty_env("MAILWARDEN_URL"))
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        let token = args
            .token
            .or_else(|| non_empty_env("MAILWARDEN_ADMIN_TOKEN"))
            .or_else(|| configured_token.map(str::to_owned));
        // reqwest is built without a default TLS provider; https needs one installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = Url::parse(server.trim())
            .with_context(|| format!("--server `{server}` is not a URL"))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            bail!("--server `{server}` must be an http:// or https:// URL");
        }
        let client = Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Api {
            client,
            base,
            token,
        })
    }

    /// The server's URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// A request to `/api/<segments>` (each segment percent-encoded) with `query`.
    pub fn request(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> anyhow::Result<RequestBuilder> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| anyhow::anyhow!("the server URL cannot take a path"))?;
            path.pop_if_empty().push("api").extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self.client.request(method, url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        Ok(request)
    }

    /// Sends `request`; an answer other than 2xx becomes an error with the server's message.
    /// Sends `request` and reads the JSON answer.
    pub async fn send_json(&self, request: RequestBuilder) -> anyhow::Result<Value> {
        self.send(request)
            .await?
            .json()
            .await
            .context("the server's answer is not JSON")
    }

    pub async fn send(&self, request: RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the service at {}", self.base))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|value| {
                let error = value.get("error")?;
                Some(format!(
                    "{}: {}",
                    text(&error["code"]),
                    text(&error["message"])
                ))
            })
            .unwrap_or(body);
        bail!("the service answered {status}: {message}")
    }
}

/// A JSON string as plain text (other values as JSON).
pub fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
