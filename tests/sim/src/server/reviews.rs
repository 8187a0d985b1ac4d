//! The review resources answered on create without touching the store: TokenReview,
//! SelfSubjectReview, SubjectAccessReview, SelfSubjectAccessReview, LocalSubjectAccessReview (the
//! evaluation itself is `auth::review`).

use super::SimState;
use super::errors::ApiError;
use super::registry::ResourceInfo;
use crate::auth::{self, AccessReviewKind, ReviewError, UserInfo};
use serde_json::{Value, json};

impl SimState {
    /// Answers a create of a review resource for `user`; `None` when `ri` is not one.
    pub(crate) fn review(
        &self,
        ri: &ResourceInfo,
        namespace: Option<&str>,
        user: &UserInfo,
        body: &[u8],
    ) -> Option<Result<Value, ApiError>> {
        let kind = match (ri.group.as_str(), ri.plural.as_str()) {
            ("authentication.k8s.io", "tokenreviews") => None,
            ("authentication.k8s.io", "selfsubjectreviews") => {
                return Some(Ok(json!({
                    "kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                    "metadata": {"creationTimestamp": null},
                    "status": {"userInfo": {"username": user.username, "groups": user.groups}}})));
            }
            ("authorization.k8s.io", "subjectaccessreviews") => Some(AccessReviewKind::Subject),
            ("authorization.k8s.io", "selfsubjectaccessreviews") => {
                Some(AccessReviewKind::SelfSubject)
            }
            ("authorization.k8s.io", "localsubjectaccessreviews") => Some(AccessReviewKind::Local),
            _ => return None,
        };
        let review = match super::parse_body(body, false) {
            Ok(v) => v,
            Err(e) => return Some(Err(e)),
        };
        let out = match kind {
            Some(kind) => auth::access_review(self, kind, user, &review, namespace),
            None => auth::token_review(
                &review,
                &|token| self.authenticate_token(token),
                &|ns, name| {
                    self.store
                        .get("/serviceaccounts", ns, name)
                        .map(|sa| crate::store::uid_of(&sa).to_string())
                },
            ),
        };
        Some(out.map_err(|e| match e {
            ReviewError::BadRequest(m) => ApiError::bad_request(m),
            ReviewError::Invalid(m) => ApiError::new(422, "Invalid", m),
        }))
    }
}
