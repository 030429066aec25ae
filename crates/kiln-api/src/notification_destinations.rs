//! Notification destinations (`settings.py`: `NotificationDestinationsAPI`),
//! `/api/2.0/notification-destinations`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `create` and `update` (PATCH) bodies.
#[derive(Debug, Default, Deserialize)]
pub struct CreateNotificationDestinationRequest {
    pub display_name: Option<String>,
    /// Exactly one of `generic_webhook`, `slack`, `microsoft_teams`, `pagerduty`, `email`.
    pub config: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListNotificationDestinationsRequest {
    pub page_size: Option<i64>,
    pub page_token: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct NotificationDestination {
    pub id: String,
    pub display_name: String,
    pub destination_type: String,
    /// Secret fields are shown as `<field>_set: true`, never their values.
    pub config: Value,
}

#[derive(Debug, Serialize)]
pub struct ListNotificationDestinationsResult {
    pub id: String,
    pub display_name: String,
    pub destination_type: String,
}

#[derive(Debug, Serialize)]
pub struct ListNotificationDestinationsResponse {
    pub results: Vec<ListNotificationDestinationsResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}
