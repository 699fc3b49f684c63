//! The item index and its queries. The index itself is written by triggers (see
//! migration 0006); this module only reads it.

use async_trait::async_trait;
use uuid::Uuid;

use super::domain::SearchQuery;
use crate::inventory::store::ItemRow;
use crate::storage::Result;

#[derive(Clone, Debug, Default)]
pub struct SearchResult {
    /// The search generation read before the search (see migration 0013): the answer is
    /// at least as new as this generation.
    pub generation: i64,
    pub items: Vec<ItemRow>,
    /// Matching items per category (all filters but the category applied), most first.
    pub categories: Vec<(String, i64)>,
}

#[async_trait]
pub trait SearchStore {
    async fn search_items(&self, q: &SearchQuery) -> Result<SearchResult>;
    /// The search generation and the rows of `ids` (in no order), read in one statement,
    /// so the rows are exactly those of that generation.
    async fn items_at_generation(&self, ids: &[Uuid]) -> Result<(i64, Vec<ItemRow>)>;
}

/// An item's row with the search generation it was read at.
#[derive(sqlx::FromRow)]
struct AtGeneration {
    generation: i64,
    #[sqlx(flatten)]
    item: ItemRow,
}

/// Part of a statement: SQL text, or a value bound in its place.
enum Piece {
    Sql(String),
    Bind(String),
    /// The relevance score's SQL (no bound values): the facets' statement, which never
    /// sorts by it, puts `0` in its place, so a materialized `hits` does not rank every hit
    /// twice.
    Score(&'static str),
}

/// The `WITH hits AS (…)` a backend builds for the words of a query: the matching items'
/// `item_id`, relevance `score`, `name`, `category`, `price` and `in_stock`, and which way
/// the score sorts.
struct Hits {
    pieces: Vec<Piece>,
    best_first: &'static str,
}

#[path = "."]
mod sqlite {
    use super::{Hits, Piece};
    use crate::search::domain::{TYPO_MIN_CHARS, one_edit_apart};
    use crate::storage::Result;
    use crate::storage::sqlite::{Db, SqliteStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;

    /// Quotes a term for an FTS5 query: inside double quotes nothing is an operator.
    fn quoted(term: &str) -> String {
        format!("\"{}\"", term.replace('"', "\"\""))
    }

    impl Backend {
        /// FTS5: every word must match, as the start of a term (`"telev"*`) or, for a
        /// longer word that starts no term at all, as a term one edit away (from the
        /// index's own vocabulary). bm25 weighs name 10, SKU 5, category 3, the rest 1.
        async fn hits(&self, words: &[String]) -> Result<Hits> {
            let mut groups = Vec::with_capacity(words.len());
            for w in words {
                let mut alternatives = vec![format!("{}*", quoted(w))];
                let len = w.chars().count();
                if len >= TYPO_MIN_CHARS && !self.starts_a_term(w).await? {
                    let first: String = w.chars().take(1).collect();
                    let near = sqlx::query_scalar::<Db, String>(
                        "SELECT term FROM items_fts_terms WHERE term >= $1 AND term < $2 \
                         AND length(term) BETWEEN $3 AND $4",
                    )
                    .bind(&first)
                    .bind(format!("{first}\u{10FFFF}"))
                    .bind(len as i64 - 1)
                    .bind(len as i64 + 1)
                    .fetch_all(self.reader())
                    .await?;
                    alternatives.extend(
                        near.iter()
                            .filter(|t| one_edit_apart(w, t))
                            .take(8)
                            .map(|t| quoted(t)),
                    );
                }
                groups.push(format!("({})", alternatives.join(" OR ")));
            }
            Ok(Hits {
                pieces: vec![
                    // MATERIALIZED: the full-text match drives. Inlined, SQLite pushes a
                    // category or price filter into it and probes the FTS index once per
                    // item of that category (seconds with 100,000 items).
                    Piece::Sql("WITH hits AS MATERIALIZED (SELECT d.item_id, ".into()),
                    Piece::Score("bm25(items_fts, 10.0, 5.0, 3.0, 1.0, 1.0)"),
                    // `item_docs` keeps what a hit is filtered and sorted by (migration
                    // 0019): one look-up by rowid per hit, `items` only for the shown rows.
                    Piece::Sql(
                        " AS score, d.name, d.category, d.price, d.in_stock \
                         FROM items_fts JOIN item_docs d ON d.docid = items_fts.rowid \
                         WHERE items_fts MATCH "
                            .into(),
                    ),
                    Piece::Bind(groups.join(" AND ")),
                    Piece::Sql(") ".into()),
                ],
                best_first: "ASC",
            })
        }

        async fn starts_a_term(&self, w: &str) -> Result<bool> {
            Ok(sqlx::query_scalar::<Db, String>(
                "SELECT term FROM items_fts_terms WHERE term >= $1 AND term < $2 LIMIT 1",
            )
            .bind(w)
            .bind(format!("{w}\u{10FFFF}"))
            .fetch_optional(self.reader())
            .await?
            .is_some())
        }
    }
}

#[path = "."]
mod postgres {
    use super::{Hits, Piece};
    use crate::search::domain::{TYPO_MIN_CHARS, one_edit_apart};
    use crate::storage::Result;
    use crate::storage::postgres::{Db, PgStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;

    impl Backend {
        /// `tsvector` (weights A name, B SKU and category, C the rest): every word must
        /// match as the start of a lexeme (`telev:*`). A word of three letters or more
        /// that starts no lexeme at all may instead sit inside the name, SKU or category
        /// (`LIKE '%word%'` through the trigram index: partial SKUs), and one of five
        /// letters or more may be a typo: it then also matches the lexemes one edit away,
        /// found in `search_terms` through trigrams (a vocabulary, not every item).
        async fn hits(&self, words: &[String]) -> Result<Hits> {
            let mut alternatives = Vec::with_capacity(words.len());
            let mut fuzzy = Vec::with_capacity(words.len());
            for w in words {
                let mut alts = vec![format!("{w}:*")];
                let len = w.chars().count();
                let starts = len < 3 || self.starts_a_lexeme(w).await?;
                if !starts && len >= TYPO_MIN_CHARS {
                    alts.extend(self.one_edit_away(w).await?);
                }
                alternatives.push(alts.join(" | "));
                fuzzy.push(!starts);
            }
            let any = alternatives
                .iter()
                .map(|a| format!("({a})"))
                .collect::<Vec<_>>()
                .join(" | ");
            let mut pieces = vec![
                Piece::Sql(
                    "WITH hits AS (SELECT s.item_id, ts_rank('{0.1, 0.2, 0.4, 1.0}', s.document, to_tsquery('simple', "
                        .into(),
                ),
                Piece::Bind(any),
                Piece::Sql(
                    ")) AS score, s.name, s.category, s.price, s.in_stock FROM item_search s WHERE "
                        .into(),
                ),
            ];
            for (i, ((w, alts), fuzzy)) in words.iter().zip(&alternatives).zip(fuzzy).enumerate() {
                if i > 0 {
                    pieces.push(Piece::Sql(" AND ".into()));
                }
                pieces.push(Piece::Sql("(s.document @@ to_tsquery('simple', ".into()));
                pieces.push(Piece::Bind(alts.clone()));
                pieces.push(Piece::Sql(")".into()));
                if fuzzy {
                    pieces.push(Piece::Sql(" OR s.words LIKE ".into()));
                    pieces.push(Piece::Bind(format!("%{w}%")));
                }
                pieces.push(Piece::Sql(")".into()));
            }
            pieces.push(Piece::Sql(") ".into()));
            Ok(Hits {
                pieces,
                best_first: "DESC",
            })
        }

        /// Indexed words one edit away from `w` (at most 8), letters and digits only.
        async fn one_edit_away(&self, w: &str) -> Result<Vec<String>> {
            let len = w.chars().count() as i32;
            let near = sqlx::query_scalar::<Db, String>(
                "SELECT term FROM search_terms WHERE term % $1 \
                 AND char_length(term) BETWEEN $2 AND $3 \
                 ORDER BY similarity(term, $1) DESC, term LIMIT 64",
            )
            .bind(w)
            .bind(len - 1)
            .bind(len + 1)
            .fetch_all(self.reader())
            .await?;
            Ok(near
                .into_iter()
                .filter(|t| t.chars().all(char::is_alphanumeric) && one_edit_apart(w, t))
                .take(8)
                .collect())
        }

        /// Does any indexed word start with `w`?
        async fn starts_a_lexeme(&self, w: &str) -> Result<bool> {
            Ok(sqlx::query_scalar::<Db, bool>(
                "SELECT EXISTS (SELECT 1 FROM search_terms WHERE term >= $1 AND term < $1 || chr(1114111))",
            )
            .bind(w)
            .fetch_one(self.reader())
            .await?)
        }
    }
}
