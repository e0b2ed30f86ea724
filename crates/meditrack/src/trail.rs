//! `meditrack audit verify`: walks every tenant's audit chain and says where it is broken.

use crate::Config;

/// The report, and whether every chain is intact.
pub async fn verify(config: &Config, tenant: Option<&str>) -> Result<(String, bool), String> {
    let opened = crate::open(config, &[audit::SERVICE])
        .await
        .map_err(|e| e.to_string())?;
    let db = crate::database(&opened, audit::SERVICE).map_err(|e| e.to_string())?;
    let store = audit::store::AuditStore::new(db.clone());
    let tenants = match tenant {
        Some(t) => vec![kernel::TenantId::parse(t).map_err(|e| format!("--tenant {t:?}: {e}"))?],
        None => store.tenants().await.map_err(|e| e.to_string())?,
    };
    let mut out = String::new();
    let mut intact = true;
    for tenant in tenants {
        let verdict = store.verify(&tenant).await.map_err(|e| e.to_string())?;
        match verdict.broken {
            None => out.push_str(&format!(
                "tenant {tenant}: {} entries, chain intact\n",
                verdict.checked
            )),
            Some(broken) => {
                intact = false;
                out.push_str(&format!(
                    "tenant {tenant}: BROKEN: {broken} ({} entries before it verified)\n",
                    verdict.checked
                ));
            }
        }
    }
    if out.is_empty() {
        out.push_str("no audit entries yet\n");
    }
    db.close().await;
    Ok((out, intact))
}
