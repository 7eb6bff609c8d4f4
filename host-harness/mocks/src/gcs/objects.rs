//! Buckets and objects of the mock GCS: generations, metagenerations, checksums, preconditions
//! and listing. Callers hold the mock's lock around each operation, which is what makes a
//! precondition check and the write it guards atomic.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};

/// One live object version (the mock keeps no history: old generations are gone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub bucket: String,
    pub name: String,
    pub data: Vec<u8>,
    pub content_type: String,
    pub metadata: BTreeMap<String, String>,
    pub generation: i64,
    pub metageneration: i64,
    pub created: SystemTime,
    pub updated: SystemTime,
    /// Who wrote it (the token's account), for assertions.
    pub uploader: String,
}

impl StoredObject {
    pub fn md5_base64(&self) -> String {
        STANDARD.encode(Md5::digest(&self.data))
    }

    pub fn crc32c_base64(&self) -> String {
        STANDARD.encode(crc32c::crc32c(&self.data).to_be_bytes())
    }

    /// The object resource as the JSON API returns it.
    pub fn resource(&self, base_url: &str) -> Value {
        let enc = encode_segment(&self.name);
        let mut v = json!({
            "kind": "storage#object",
            "id": format!("{}/{}/{}", self.bucket, self.name, self.generation),
            "selfLink": format!("{base_url}/storage/v1/b/{}/o/{enc}", self.bucket),
            "mediaLink": format!(
                "{base_url}/download/storage/v1/b/{}/o/{enc}?generation={}&alt=media",
                self.bucket, self.generation
            ),
            "name": self.name,
            "bucket": self.bucket,
            "generation": self.generation.to_string(),
            "metageneration": self.metageneration.to_string(),
            "contentType": self.content_type,
            "storageClass": "STANDARD",
            "size": self.data.len().to_string(),
            "md5Hash": self.md5_base64(),
            "crc32c": self.crc32c_base64(),
            "etag": self.etag(),
            "timeCreated": rfc3339(self.created),
            "updated": rfc3339(self.updated),
            "timeStorageClassUpdated": rfc3339(self.created),
        });
        if !self.metadata.is_empty() {
            v["metadata"] = json!(self.metadata);
        }
        v
    }

    /// Changes with every generation and metageneration, like GCS's.
    pub fn etag(&self) -> String {
        STANDARD.encode(format!("{}/{}", self.generation, self.metageneration))
    }
}

/// The four JSON API preconditions; `if_generation_match = Some(0)` means "must not exist".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Preconditions {
    pub if_generation_match: Option<i64>,
    pub if_generation_not_match: Option<i64>,
    pub if_metageneration_match: Option<i64>,
    pub if_metageneration_not_match: Option<i64>,
}

/// Why an operation on the store failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    NoBucket,
    NoObject,
    /// 412 conditionNotMet.
    ConditionNotMet,
    /// 304 for reads whose `ifGenerationNotMatch`/`ifMetagenerationNotMatch` failed.
    NotModified,
    BucketExists,
}

impl Preconditions {
    pub fn is_empty(&self) -> bool {
        *self == Preconditions::default()
    }

    /// Checks against the current object (None when absent). `read` selects GCS's 304 for
    /// failed not-match conditions on reads.
    pub fn check(&self, current: Option<&StoredObject>, read: bool) -> Result<(), StoreError> {
        let generation = current.map(|o| o.generation).unwrap_or(0);
        if let Some(want) = self.if_generation_match {
            if want != generation {
                return Err(StoreError::ConditionNotMet);
            }
        }
        if let Some(not) = self.if_generation_not_match {
            if not == generation {
                return Err(if read {
                    StoreError::NotModified
                } else {
                    StoreError::ConditionNotMet
                });
            }
        }
        if self.if_metageneration_match.is_some() || self.if_metageneration_not_match.is_some() {
            // A metageneration condition on a missing object cannot hold.
            let Some(obj) = current else {
                return Err(StoreError::ConditionNotMet);
            };
            if let Some(want) = self.if_metageneration_match {
                if want != obj.metageneration {
                    return Err(StoreError::ConditionNotMet);
                }
            }
            if let Some(not) = self.if_metageneration_not_match {
                if not == obj.metageneration {
                    return Err(if read {
                        StoreError::NotModified
                    } else {
                        StoreError::ConditionNotMet
                    });
                }
            }
        }
        Ok(())
    }
}

/// What a write brings besides the bytes.
#[derive(Clone, Debug, Default)]
pub struct NewObject {
    pub name: String,
    pub data: Vec<u8>,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// One entry of a listing page.
#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<StoredObject>,
    pub prefixes: Vec<String>,
    pub next_page_token: Option<String>,
}

#[derive(Default)]
pub struct Store {
    buckets: HashMap<String, BTreeMap<String, StoredObject>>,
    last_generation: i64,
}

impl Store {
    pub fn create_bucket(&mut self, name: &str) -> Result<(), StoreError> {
        if self.buckets.contains_key(name) {
            return Err(StoreError::BucketExists);
        }
        self.buckets.insert(name.to_string(), BTreeMap::new());
        Ok(())
    }

    pub fn has_bucket(&self, name: &str) -> bool {
        self.buckets.contains_key(name)
    }

    pub fn get(&self, bucket: &str, name: &str) -> Result<&StoredObject, StoreError> {
        self.buckets
            .get(bucket)
            .ok_or(StoreError::NoBucket)?
            .get(name)
            .ok_or(StoreError::NoObject)
    }

    pub fn objects(&self, bucket: &str) -> Vec<StoredObject> {
        self.buckets
            .get(bucket)
            .map(|b| b.values().cloned().collect())
            .unwrap_or_default()
    }

    /// GCS generations are microsecond timestamps; they must also strictly increase.
    fn next_generation(&mut self, now: SystemTime) -> i64 {
        let micros = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        self.last_generation = micros.max(self.last_generation + 1);
        self.last_generation
    }

    /// Checks the preconditions and writes a new generation, in one step.
    pub fn put(
        &mut self,
        bucket: &str,
        obj: NewObject,
        pre: &Preconditions,
        now: SystemTime,
        uploader: &str,
    ) -> Result<StoredObject, StoreError> {
        let current = self
            .buckets
            .get(bucket)
            .ok_or(StoreError::NoBucket)?
            .get(&obj.name);
        pre.check(current, false)?;
        let generation = self.next_generation(now);
        let stored = StoredObject {
            bucket: bucket.to_string(),
            name: obj.name.clone(),
            data: obj.data,
            content_type: obj
                .content_type
                .unwrap_or_else(|| "application/octet-stream".to_string()),
            metadata: obj.metadata,
            generation,
            metageneration: 1,
            created: now,
            updated: now,
            uploader: uploader.to_string(),
        };
        let b = self.buckets.get_mut(bucket).ok_or(StoreError::NoBucket)?;
        b.insert(obj.name, stored.clone());
        Ok(stored)
    }

    /// Metadata update (PATCH): bumps the metageneration.
    pub fn patch(
        &mut self,
        bucket: &str,
        name: &str,
        patch: &Map<String, Value>,
        pre: &Preconditions,
        now: SystemTime,
    ) -> Result<StoredObject, StoreError> {
        let obj = self
            .buckets
            .get_mut(bucket)
            .ok_or(StoreError::NoBucket)?
            .get_mut(name)
            .ok_or(StoreError::NoObject)?;
        pre.check(Some(obj), false)?;
        if let Some(ct) = patch.get("contentType").and_then(Value::as_str) {
            obj.content_type = ct.to_string();
        }
        if let Some(md) = patch.get("metadata") {
            match md {
                Value::Null => obj.metadata.clear(),
                Value::Object(m) => {
                    for (k, v) in m {
                        match v {
                            Value::Null => {
                                obj.metadata.remove(k);
                            }
                            Value::String(s) => {
                                obj.metadata.insert(k.clone(), s.clone());
                            }
                            other => {
                                obj.metadata.insert(k.clone(), other.to_string());
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        obj.metageneration += 1;
        obj.updated = now;
        Ok(obj.clone())
    }

    pub fn delete(
        &mut self,
        bucket: &str,
        name: &str,
        pre: &Preconditions,
    ) -> Result<(), StoreError> {
        let b = self.buckets.get_mut(bucket).ok_or(StoreError::NoBucket)?;
        let current = b.get(name).ok_or(StoreError::NoObject)?;
        pre.check(Some(current), false)?;
        b.remove(name);
        Ok(())
    }

    /// Lists names under `prefix`, rolling names up at `delimiter` into `prefixes`; pages hold
    /// at most `max_results` entries (objects and prefixes together, as GCS counts them).
    pub fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        start_after: Option<&str>,
        max_results: usize,
    ) -> Result<ListPage, StoreError> {
        let b = self.buckets.get(bucket).ok_or(StoreError::NoBucket)?;
        // Entries in name order; a rolled-up prefix sorts where its first member does.
        let mut entries: Vec<(String, Option<&StoredObject>)> = Vec::new();
        for (name, obj) in b.range(prefix.to_string()..) {
            if !name.starts_with(prefix) {
                break;
            }
            let rolled = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
                name[prefix.len()..]
                    .find(d)
                    .map(|i| name[..prefix.len() + i + d.len()].to_string())
            });
            match rolled {
                Some(p) => {
                    if entries.last().map(|(k, o)| o.is_none() && *k == p) != Some(true) {
                        entries.push((p, None));
                    }
                }
                None => entries.push((name.clone(), Some(obj))),
            }
        }
        let start = match start_after {
            Some(token) => entries
                .iter()
                .position(|(k, _)| k.as_str() > token)
                .unwrap_or(entries.len()),
            None => 0,
        };
        let max = max_results.max(1);
        let page = &entries[start..entries.len().min(start + max)];
        let more = start + page.len() < entries.len();
        Ok(ListPage {
            items: page.iter().filter_map(|(_, o)| o.cloned()).collect(),
            prefixes: page
                .iter()
                .filter(|(_, o)| o.is_none())
                .map(|(k, _)| k.clone())
                .collect(),
            next_page_token: if more {
                page.last().map(|(k, _)| STANDARD.encode(k))
            } else {
                None
            },
        })
    }
}

/// Decodes a `pageToken` back to the last name of the previous page.
pub fn decode_page_token(token: &str) -> Option<String> {
    STANDARD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

/// Percent-encodes one path segment (object names keep `/` as `%2F`).
pub fn encode_segment(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

pub fn rfc3339(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    dt.format(&fmt).unwrap_or_default()
}
