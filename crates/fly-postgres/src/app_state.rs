//! App state for mutations: values registered on the repo builder, reached
//! from inside [`crate::Mutation::run`] (which has only its arguments and
//! the transaction) the way a procedure reaches its state.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use crate::error::Error;

/// Values by type, as registered with [`crate::RepoBuilder::state`].
#[derive(Clone, Default)]
pub(crate) struct AppState {
    values: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("values", &self.values.len())
            .finish()
    }
}

impl AppState {
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: Arc<T>) {
        self.values.insert(TypeId::of::<T>(), value);
    }

    fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.values
            .get(&TypeId::of::<T>())
            .and_then(|value| Arc::clone(value).downcast::<T>().ok())
    }
}

tokio::task_local! {
    static CURRENT: Arc<AppState>;
}

/// Runs a mutation's future with the repo's state in reach.
pub(crate) async fn with_state<F: Future>(state: Arc<AppState>, future: F) -> F::Output {
    CURRENT.scope(state, future).await
}

/// The value of type `T` registered with [`crate::RepoBuilder::state`], from
/// inside [`crate::Mutation::run`] (in whichever region's instance runs it:
/// register it on every instance).
///
/// ```
/// use fly_postgres::{Error, Mutation, sqlx};
/// use serde::{Deserialize, Serialize};
///
/// struct Limits { max_todos: i64 }
///
/// #[derive(Serialize, Deserialize)]
/// struct CreateTodo { title: String }
///
/// impl Mutation for CreateTodo {
///     const NAME: &'static str = "create_todo";
///     type Output = i64;
///     async fn run(self, tx: &mut sqlx::PgConnection) -> Result<i64, Error> {
///         let limits = fly_postgres::state::<Limits>()?;
///         let n: i64 = sqlx::query_scalar("select count(*) from todos").fetch_one(&mut *tx).await?;
///         if n >= limits.max_todos {
///             return Err(Error::app("too many todos"));
///         }
///         Ok(sqlx::query_scalar("insert into todos (title) values ($1) returning id")
///             .bind(self.title).fetch_one(&mut *tx).await?)
///     }
/// }
/// // Repo::builder().state(Limits { max_todos: 100 }).mutation::<CreateTodo>()
/// ```
pub fn state<T: Send + Sync + 'static>() -> Result<Arc<T>, Error> {
    CURRENT
        .try_with(|state| state.get::<T>())
        .map_err(|_| {
            Error::Config(
                "fly_postgres::state() is for inside Mutation::run, while the repo runs it".into(),
            )
        })?
        .ok_or_else(|| {
            Error::Config(format!(
                "no app state of type {} was registered (RepoBuilder::state)",
                std::any::type_name::<T>()
            ))
        })
}
