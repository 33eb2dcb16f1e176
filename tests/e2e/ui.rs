//! The web console's access rules, over HTTP and in real Chromium: login, sessions,
//! logout, refused cross-site posts and the security headers.

use fantoccini::Locator;
use mailwarden::config::Secret;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};

use crate::browser::{self, log_in, wait_for_text, wait_until, with_browser};
use crate::helpers::{TestApp, no_redirects, spawn_app, spawn_app_with};

const TOKEN: &str = "console-admin-token";

async fn app_with_token() -> TestApp {
    spawn_app_with(|config| config.admin_token = Some(Secret::new(TOKEN))).await
}

/// Logs in over HTTP and returns the `Cookie` header value of the session.
async fn session_cookie(app: &TestApp) -> String {
    let response = no_redirects()
        .post(app.url("/ui/login"))
        .header("origin", format!("http://{}", app.address))
        .form(&[("token", TOKEN), ("next", "/ui/events")])
        .send()
        .await
        .expect("login answers");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/ui/events");
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn pages_need_a_login_when_a_token_is_set_and_a_cookie_never_opens_the_api() {
    let app = app_with_token().await;
    let response = no_redirects()
        .get(app.url("/ui/events?kind=bounce"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[LOCATION],
        "/ui/login?next=%2Fui%2Fevents%3Fkind%3Dbounce"
    );
    // htmx requests are told where to go instead of getting the login page swapped in.
    let response = no_redirects()
        .get(app.url("/ui/events"))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.headers()["hx-redirect"]
            .to_str()
            .unwrap()
            .starts_with("/ui/login")
    );

    let cookie = session_cookie(&app).await;
    let page = no_redirects()
        .get(app.url("/ui/events"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let api = no_redirects()
        .get(app.url("/api/events"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        api.status(),
        StatusCode::UNAUTHORIZED,
        "a cookie never authorizes /api"
    );

    // A forged or stale cookie is a login page, not a page.
    let forged = no_redirects()
        .get(app.url("/ui/events"))
        .header(
            COOKIE,
            "mailwarden_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn wrong_tokens_are_refused_and_limited_per_client() {
    let app = app_with_token().await;
    let origin = format!("http://{}", app.address);
    for attempt in 0..5 {
        let response = no_redirects()
            .post(app.url("/ui/login"))
            .header("origin", &origin)
            .form(&[("token", "guess")])
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
        assert!(response.headers().get(SET_COOKIE).is_none());
        let page = response.text().await.unwrap();
        assert!(page.contains("That is not the admin token."), "{page}");
    }
    // The sixth try in the minute is refused before the token is compared: even the
    // right one.
    let response = no_redirects()
        .post(app.url("/ui/login"))
        .header("origin", &origin)
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get(SET_COOKIE).is_none());
}

#[tokio::test]
async fn unsafe_requests_from_another_site_are_refused_even_with_the_session() {
    let app = app_with_token().await;
    let cookie = session_cookie(&app).await;
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "http://evil.example"),
    ] {
        let response = no_redirects()
            .post(app.url("/ui/logout"))
            .header(COOKIE, &cookie)
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{name}: {value}");
    }
    // Without either header (not a browser) the post is refused too.
    let response = no_redirects()
        .post(app.url("/ui/logout"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // The session survived all of them.
    let page = no_redirects()
        .get(app.url("/ui"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_console_answer_carries_the_security_headers() {
    let app = spawn_app().await;
    for path in [
        "/ui",
        "/ui/login",
        "/ui/no-such-page",
        "/ui/assets/style.css",
    ] {
        let response = no_redirects().get(app.url(path)).send().await.unwrap();
        let headers = response.headers();
        let csp = headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
    }
    // Without a token (loopback only) the console is open, as the API is.
    let response = no_redirects().get(app.url("/ui")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(!html.contains("Log out"), "nothing to log out of: {html}");
    // No inline script or style anywhere in the page.
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains(" style="), "{html}");
    let missing = no_redirects()
        .get(app.url("/ui/no-such-page"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let assets = no_redirects()
        .get(app.url("/ui/assets/htmx.min.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(assets.status(), StatusCode::OK);
    assert!(assets.text().await.unwrap().contains("htmx"));
}

#[tokio::test]
async fn a_browser_logs_in_is_refused_a_cross_site_form_and_logs_out() {
    let app = app_with_token().await;
    // Another origin on the same host (another port): same-site for the browser, so the
    // SameSite cookie alone would not stop its form.
    let attacker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let attacker_url = format!("http://{}", attacker.local_addr().unwrap());
    let target = app.url("/ui/logout");
    let page = format!(
        "<!DOCTYPE html><html><body><form id=f method=post action=\"{target}\">\
         <button id=go type=submit>Win a prize</button></form></body></html>"
    );
    let site = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    tokio::spawn(async move { axum::serve(attacker, site).await });

    let base = app.url("");
    with_browser("login_cross_site_logout", move |client| async move {
        let events = format!("{base}/ui/events");
        log_in(&client, &base, "/ui/events", TOKEN).await;
        wait_for_text(&client, "Events").await;

        // A form on the other site posts to the console with the browser's cookie.
        client.goto(&attacker_url).await.unwrap();
        client
            .find(Locator::Id("go"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let refused = wait_for_text(&client, "Refused").await;
        assert!(
            refused.contains("did not come from a page of this console"),
            "{refused}"
        );

        // Still logged in: the console opens without the login form.
        client.goto(&events).await.unwrap();
        wait_for_text(&client, "Log out").await;
        client
            .find(Locator::Css("form.logout button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_until(&client, "the login form", |url| url.contains("/ui/login")).await;
        // Logged out for real: the page sends back to the login form.
        client.goto(&events).await.unwrap();
        wait_until(&client, "the login form again", |url| {
            url.contains("/ui/login")
        })
        .await;
        browser::wait_for(&client, Locator::Css("input[name=token]")).await;
    })
    .await;
}
