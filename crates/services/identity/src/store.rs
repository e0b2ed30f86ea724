//! Accounts and refresh tokens over SQLite or PostgreSQL. Times are compared in Rust, not
//! in SQL, so the statements run unchanged on both.

use crate::user::{Kind, User};
use chrono::{DateTime, Utc};
use kernel::TenantId;
use store::{Db, DbError, execute, on_pool, on_tx};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct IdentityStore {
    db: Db,
}

/// An account and its password hash, as login needs it.
#[derive(Debug)]
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
}

/// A refresh token to store: its hash, never the token.
#[derive(Debug)]
pub struct NewRefresh {
    pub token_hash: String,
    pub family: Uuid,
    pub user: Uuid,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub session_expires_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum InsertUserError {
    #[error("that user name is taken")]
    UsernameTaken,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Why a refresh token was not exchanged.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("unknown refresh token")]
    Unknown,
    #[error("the refresh token has expired")]
    Expired,
    /// It was used or revoked before: the family is revoked now.
    #[error("the refresh token was already used; its session is revoked")]
    Reused,
    #[error(transparent)]
    Db(#[from] DbError),
}

const USER_COLUMNS: &str = "user_id, username, tenant_id, kind, password_hash, roles, patient_id, provider_id, disabled_at";

#[derive(sqlx::FromRow)]
struct UserRow {
    user_id: Uuid,
    username: String,
    tenant_id: String,
    kind: String,
    password_hash: String,
    roles: String,
    patient_id: Option<Uuid>,
    provider_id: Option<String>,
    disabled_at: Option<DateTime<Utc>>,
}

impl UserRow {
    fn into_credentials(self) -> Result<Credentials, DbError> {
        Ok(Credentials {
            user: User {
                id: self.user_id,
                username: self.username,
                tenant: TenantId::parse(&self.tenant_id)
                    .map_err(|_| DbError::Invariant("a stored tenant id is malformed"))?,
                kind: Kind::parse(&self.kind)
                    .ok_or(DbError::Invariant("a stored user kind is unknown"))?,
                roles: self.roles.split_whitespace().map(str::to_owned).collect(),
                patient_id: self.patient_id,
                provider_id: self.provider_id,
                disabled: self.disabled_at.is_some(),
            },
            password_hash: self.password_hash,
        })
    }
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    family_id: Uuid,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
    session_expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl IdentityStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub async fn insert_user(
        &self,
        user: &User,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<(), InsertUserError> {
        let result = on_pool!(&self.db, |c| {
            sqlx::query(
            "INSERT INTO users (user_id, username, tenant_id, kind, password_hash, roles, patient_id, provider_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )
        .bind(user.id)
        .bind(&user.username)
        .bind(user.tenant.as_str())
        .bind(user.kind.as_str())
        .bind(password_hash)
        .bind(user.roles.join(" "))
        .bind(user.patient_id)
        .bind(user.provider_id.as_deref())
        .bind(now)
        .execute(c)
        .await
        .map(|_| ())
        });
        match result.map_err(DbError::from) {
            Ok(()) => Ok(()),
            Err(e)
                if e.unique_violation()
                    .is_some_and(|v| v.is("users_username_key", "users.username")) =>
            {
                Err(InsertUserError::UsernameTaken)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn by_username(&self, username: &str) -> Result<Option<Credentials>, DbError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        let row = on_pool!(&self.db, |c| sqlx::query_as::<_, UserRow>(
            sqlx::AssertSqlSafe(sql.as_str())
        )
        .bind(username)
        .fetch_optional(c)
        .await)?;
        row.map(UserRow::into_credentials).transpose()
    }

    pub async fn by_id(&self, id: Uuid) -> Result<Option<User>, DbError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE user_id = $1");
        let row = on_pool!(&self.db, |c| sqlx::query_as::<_, UserRow>(
            sqlx::AssertSqlSafe(sql.as_str())
        )
        .bind(id)
        .fetch_optional(c)
        .await)?;
        Ok(row
            .map(UserRow::into_credentials)
            .transpose()?
            .map(|c| c.user))
    }

    pub async fn list(&self, tenant: Option<&TenantId>) -> Result<Vec<User>, DbError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY tenant_id, username"
        );
        let tenant = tenant.map(|t| t.as_str().to_owned());
        let rows = on_pool!(&self.db, |c| sqlx::query_as::<_, UserRow>(
            sqlx::AssertSqlSafe(sql.as_str())
        )
        .bind(tenant.as_deref())
        .fetch_all(c)
        .await)?;
        rows.into_iter()
            .map(|r| r.into_credentials().map(|c| c.user))
            .collect()
    }

    /// Disables an account and revokes its refresh tokens; `false` when there is none.
    pub async fn disable(&self, username: &str, now: DateTime<Utc>) -> Result<bool, DbError> {
        let mut tx = self.db.begin().await?;
        let n = execute!(
            &mut tx,
            sqlx::query(
                "UPDATE users SET disabled_at = $1 WHERE username = $2 AND disabled_at IS NULL"
            )
            .bind(now)
            .bind(username)
        )?;
        execute!(
            &mut tx,
            sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = $1 WHERE revoked_at IS NULL \
                 AND user_id IN (SELECT user_id FROM users WHERE username = $2)"
            )
            .bind(now)
            .bind(username)
        )?;
        tx.commit().await?;
        Ok(n == 1)
    }

    pub async fn insert_refresh(&self, new: &NewRefresh) -> Result<(), DbError> {
        let mut tx = self.db.begin().await?;
        insert_refresh(&mut tx, new).await?;
        tx.commit().await
    }

    /// Exchanges the refresh token `old_hash` for `next` (same family) in one transaction,
    /// returning the account and the session's end. A token used before revokes its family.
    pub async fn rotate(
        &self,
        old_hash: &str,
        next: impl FnOnce(Uuid, Uuid, DateTime<Utc>) -> NewRefresh,
        now: DateTime<Utc>,
    ) -> Result<(Uuid, DateTime<Utc>), RotateError> {
        let mut tx = self.db.begin().await?;
        let row = on_tx!(&mut tx, |c| sqlx::query_as::<_, RefreshRow>(
            "SELECT family_id, user_id, expires_at, session_expires_at, used_at, revoked_at \
             FROM refresh_tokens WHERE token_hash = $1"
        )
        .bind(old_hash)
        .fetch_optional(c)
        .await)
        .map_err(DbError::from)?;
        let row = row.map(|r| {
            (
                r.family_id,
                r.user_id,
                r.expires_at,
                r.session_expires_at,
                r.used_at.is_some() || r.revoked_at.is_some(),
            )
        });
        let Some((family, user, expires_at, session_end, spent)) = row else {
            return Err(RotateError::Unknown);
        };
        if spent {
            revoke_family(&mut tx, family, now).await?;
            tx.commit().await?;
            return Err(RotateError::Reused);
        }
        if expires_at <= now || session_end <= now {
            return Err(RotateError::Expired);
        }
        let marked = execute!(
            &mut tx,
            sqlx::query(
                "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL"
            )
            .bind(now)
            .bind(old_hash)
        )
        .map_err(DbError::from)?;
        if marked != 1 {
            // A concurrent refresh with the same token won: this one is the replay.
            return Err(RotateError::Reused);
        }
        let next = next(family, user, session_end);
        insert_refresh(&mut tx, &next).await?;
        tx.commit().await?;
        Ok((user, session_end))
    }

    /// Revokes the session the refresh token belongs to (logout). Unknown tokens are ignored.
    pub async fn revoke(&self, token_hash: &str, now: DateTime<Utc>) -> Result<(), DbError> {
        let mut tx = self.db.begin().await?;
        let family = on_tx!(&mut tx, |c| sqlx::query_scalar::<_, Uuid>(
            "SELECT family_id FROM refresh_tokens WHERE token_hash = $1"
        )
        .bind(token_hash)
        .fetch_optional(c)
        .await)?;
        if let Some(family) = family {
            revoke_family(&mut tx, family, now).await?;
        }
        tx.commit().await
    }
}

async fn insert_refresh(tx: &mut store::Tx, new: &NewRefresh) -> Result<(), DbError> {
    execute!(
        tx,
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, issued_at, expires_at, session_expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(&new.token_hash)
        .bind(new.family)
        .bind(new.user)
        .bind(new.issued_at)
        .bind(new.expires_at)
        .bind(new.session_expires_at)
    )?;
    Ok(())
}

async fn revoke_family(
    tx: &mut store::Tx,
    family: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    execute!(
        tx,
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL"
        )
        .bind(now)
        .bind(family)
    )?;
    Ok(())
}
