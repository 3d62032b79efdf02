//! `GET /u/TOKEN` and `POST /u/TOKEN`: the unsubscribe link of every
//! message.
//!
//! A POST is RFC 8058's one-click request (a mail client sends
//! `List-Unsubscribe=One-Click`), or the button of the page: the address
//! goes on the suppression list and the answer is 200, as often as it is
//! asked. A GET only shows a page, in the order's language, with a button
//! that posts: link scanners and previews fetch every link in a message,
//! and must never unsubscribe anyone.
//!
//! The token is checked against the order's current address before
//! anything else; a malformed token gets 400, and a token that does not
//! verify (altered, another secret, an order that does not exist) gets 403,
//! the last two alike.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::{read_body, App, BodyError};
use crate::order::Order;
use crate::store::{EventKind, NewEvent, StoreError};
use crate::suppress::{Address, Reason, Suppression};
use crate::unsubscribe::{self, TokenError};

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum UnsubscribeError {
    #[error("unsubscribe links are off ([unsubscribe] in config.toml)")]
    Off,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("{}", .0.reason())]
    Body(BodyError),
    #[error("the request could not be recorded, try again: {0}")]
    Store(#[from] StoreError),
}

impl IntoResponse for UnsubscribeError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Off => StatusCode::NOT_FOUND,
            Self::Token(TokenError::Invalid) => StatusCode::FORBIDDEN,
            Self::Token(_) => StatusCode::BAD_REQUEST,
            Self::Body(BodyError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body(BodyError::Timeout) => StatusCode::REQUEST_TIMEOUT,
            Self::Body(BodyError::Unreadable) => StatusCode::BAD_REQUEST,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, format!("{self}\n")).into_response()
    }
}

/// The order a token names and the address it was made for, once the
/// token has verified.
async fn verified(app: &App, token: &str) -> Result<(Order, Address), UnsubscribeError> {
    let config = app
        .config
        .unsubscribe
        .as_ref()
        .ok_or(UnsubscribeError::Off)?;
    let claim = unsubscribe::read(token)?;
    let (order, _) = app
        .store
        .load_order(&claim.order)
        .await?
        .ok_or(TokenError::Invalid)?;
    let address = Address::parse(order.buyer_email.as_str()).map_err(|_| TokenError::Invalid)?;
    config.signer.verify(&claim, &address)?;
    Ok((order, address))
}

/// `GET /u/TOKEN`: the page with the button. Changes nothing.
pub async fn page(State(app): State<Arc<App>>, Path(token): Path<String>) -> Response {
    match verified(&app, &token).await {
        Ok((order, _)) => html(&Page::of(&order).ask(&token)),
        Err(e) => e.into_response(),
    }
}

/// `POST /u/TOKEN`: unsubscribes.
pub async fn confirm(
    State(app): State<Arc<App>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match unsubscribe(&app, &token, &headers, body).await {
        Ok(order) => html(&Page::of(&order).done()),
        Err(e) => e.into_response(),
    }
}

async fn unsubscribe(
    app: &App,
    token: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Order, UnsubscribeError> {
    // The body says nothing a one-click request must say differently (RFC
    // 8058 sends `List-Unsubscribe=One-Click`, the page's button the same);
    // it is read, within the listener's limits, only so the connection can
    // be reused.
    read_body(app, headers, body)
        .await
        .map_err(UnsubscribeError::Body)?;
    let (order, address) = verified(app, token).await?;
    let now = Utc::now();
    let detail = format!("unsubscribe link of order {}", order.key);
    let added = app
        .store
        .suppress(&Suppression {
            address: address.clone(),
            reason: Reason::Unsubscribed,
            detail: Some(detail),
            at: now,
        })
        .await?;
    if added {
        app.store
            .record_event(&NewEvent {
                at: now,
                address,
                kind: EventKind::Unsubscribe,
                status: None,
                diagnostic: None,
                smtp_code: None,
                message_id: None,
                answers: Some((order.key.clone(), "-".into())),
                source: "unsubscribe link".into(),
            })
            .await?;
        tracing::info!(order = %order.key, "buyer unsubscribed");
    }
    Ok(order)
}

fn html(body: &str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
            ),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// The page's words in one language.
struct Page {
    lang: &'static str,
    title: &'static str,
    ask: &'static str,
    button: &'static str,
    done: &'static str,
}

/// The languages the shipped templates are written in; others get English.
const PAGES: [Page; 6] = [
    Page {
        lang: "en",
        title: "Unsubscribe",
        ask: "Would you like to receive no more emails about your orders from us?",
        button: "Unsubscribe",
        done: "Done: you will receive no more emails about your orders from us.",
    },
    Page {
        lang: "de",
        title: "Abmelden",
        ask: "Möchten Sie keine weiteren E-Mails zu Ihren Bestellungen von uns erhalten?",
        button: "Abmelden",
        done: "Erledigt: Sie erhalten keine weiteren E-Mails zu Ihren Bestellungen von uns.",
    },
    Page {
        lang: "fr",
        title: "Désinscription",
        ask: "Vous ne souhaitez plus recevoir d’e-mails de notre part au sujet de vos commandes ?",
        button: "Me désinscrire",
        done:
            "C’est fait : vous ne recevrez plus d’e-mails de notre part au sujet de vos commandes.",
    },
    Page {
        lang: "es",
        title: "Darse de baja",
        ask: "¿Prefiere no recibir más correos nuestros sobre sus pedidos?",
        button: "Darme de baja",
        done: "Hecho: no recibirá más correos nuestros sobre sus pedidos.",
    },
    Page {
        lang: "it",
        title: "Disiscrizione",
        ask: "Preferisce non ricevere più e-mail da parte nostra sui suoi ordini?",
        button: "Disiscrivimi",
        done: "Fatto: non riceverà più e-mail da parte nostra sui suoi ordini.",
    },
    Page {
        lang: "ja",
        title: "配信停止",
        ask: "ご注文に関するメールの配信を停止しますか？",
        button: "配信を停止する",
        done: "配信を停止しました。今後、ご注文に関するメールはお送りしません。",
    },
];

impl Page {
    /// The page in the order's language (`de-AT` reads as `de`).
    fn of(order: &Order) -> &'static Page {
        let language = order
            .locale
            .as_ref()
            .map(|l| {
                l.as_str()
                    .split(['-', '_'])
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        PAGES
            .iter()
            .find(|p| p.lang == language)
            .unwrap_or(&PAGES[0])
    }

    fn frame(&self, content: &str) -> String {
        format!(
            "<!doctype html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width\">\
             <meta name=\"robots\" content=\"noindex\"><title>{}</title></head>\
             <body style=\"font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em\">\
             {content}</body></html>\n",
            self.lang, self.title
        )
    }

    /// The question and the button. The token is URL-safe base64, so it
    /// needs no escaping in the form's action.
    fn ask(&self, token: &str) -> String {
        self.frame(&format!(
            "<p>{}</p><form method=\"post\" action=\"/u/{token}\">\
             <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
             <button type=\"submit\">{}</button></form>",
            self.ask, self.button
        ))
    }

    fn done(&self) -> String {
        self.frame(&format!("<p>{}</p>", self.done))
    }
}
