//! The TCLIService calls. A failure a client should see is a TStatus with
//! ERROR_STATUS (the connector raises it); a statement's own failure is the
//! operation's ERROR_STATE with the engine's message (`ServerOperationError`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_core::time::now_ms;

use super::batches::Framed;
use super::operations::{self, Operation};
use super::replies::*;
use super::tcli::*;
use super::{metadata, Caller, SqlProtocol, SqlSession, Target};
use crate::history::QueryRecord;

/// How long ExecuteStatement waits for direct results.
const DIRECT_WAIT: Duration = Duration::from_secs(5);
/// How long FetchResults waits for a statement still running.
const FETCH_WAIT: Duration = Duration::from_secs(60);
/// The newest protocol version Kiln speaks.
const NEWEST: i32 = TProtocolVersion::SPARK_CLI_SERVICE_PROTOCOL_V8.0;

pub(crate) struct Handler {
    pub protocol: Arc<SqlProtocol>,
    pub caller: Caller,
}

impl Handler {
    fn session_guid(&self, handle: Option<&TSessionHandle>) -> Option<Vec<u8>> {
        let guid = handle_guid(handle.and_then(|h| h.session_id.as_ref()));
        let sessions = self.protocol.sessions.lock().ok()?;
        let s = sessions.get(&guid)?;
        (s.user == self.caller.user && s.target == self.caller.target).then_some(guid)
    }

    fn operation(&self, handle: Option<&TOperationHandle>) -> Option<(Vec<u8>, Arc<Operation>)> {
        let guid = handle_guid(handle.and_then(|h| h.operation_id.as_ref()));
        let op = self.protocol.operations.lock().ok()?.get(&guid).cloned()?;
        self.session_guid_of(&op.session)?;
        Some((guid, op))
    }

    fn session_guid_of(&self, guid: &[u8]) -> Option<()> {
        let sessions = self.protocol.sessions.lock().ok()?;
        let s = sessions.get(guid)?;
        (s.user == self.caller.user).then_some(())
    }

    fn status_of(&self, op: &Operation) -> TGetOperationStatusResp {
        let Some(s) = op.snapshot() else {
            return TGetOperationStatusResp {
                status: failed("the operation's state cannot be read"),
                ..Default::default()
            };
        };
        TGetOperationStatusResp {
            status: ok(),
            operation_state: Some(s.state),
            error_message: s.error.clone(),
            display_message: s.error.clone(),
            sql_state: s.error.as_ref().map(|_| "42000".to_string()),
            operation_started: Some(s.started_ms),
            operation_completed: (s.completed_ms > 0).then_some(s.completed_ms),
            has_result_set: Some(s.result.is_some()),
            ..Default::default()
        }
    }

    fn metadata_of(&self, op: &Operation) -> TGetResultSetMetadataResp {
        match op.snapshot().and_then(|s| s.result) {
            Some(framed) => TGetResultSetMetadataResp {
                status: ok(),
                schema: Some(table_schema(&framed)),
                result_format: Some(if op.arrow {
                    TSparkRowSetType::ARROW_BASED_SET
                } else {
                    TSparkRowSetType::COLUMN_BASED_SET
                }),
                lz4_compressed: Some(op.lz4),
                arrow_schema: op.arrow.then(|| framed.schema.clone()),
                is_staging_operation: Some(false),
            },
            None => TGetResultSetMetadataResp {
                status: failed("The operation has no result (it did not finish)."),
                ..Default::default()
            },
        }
    }

    fn fetch(&self, op: &Operation, max_rows: i64, with_metadata: bool) -> TFetchResultsResp {
        let Some((start, batches, more)) = op.take(max_rows) else {
            return TFetchResultsResp {
                status: failed("The operation has no result (it did not finish)."),
                ..Default::default()
            };
        };
        let results = if op.arrow {
            TRowSet {
                start_row_offset: Some(start),
                rows: Some(Vec::new()),
                columns: None,
                column_count: None,
                arrow_batches: Some(
                    batches
                        .into_iter()
                        .map(|(batch, rows)| TSparkArrowBatch {
                            batch: Some(batch),
                            row_count: Some(rows),
                        })
                        .collect(),
                ),
            }
        } else {
            let schema = op
                .snapshot()
                .and_then(|s| s.result)
                .map(|r| r.schema.clone())
                .unwrap_or_default();
            match super::columns::from_batches(&schema, &batches) {
                Ok(columns) => TRowSet {
                    start_row_offset: Some(start),
                    rows: Some(Vec::new()),
                    column_count: Some(columns.len() as i32),
                    columns: Some(columns),
                    arrow_batches: None,
                },
                Err(message) => {
                    return TFetchResultsResp {
                        status: failed(message),
                        ..Default::default()
                    }
                }
            }
        };
        TFetchResultsResp {
            status: ok(),
            has_more_rows: Some(more),
            results: Some(results),
            result_set_metadata: with_metadata.then(|| self.metadata_of(op)),
        }
    }

    /// The answer to a call that started `op`: its handle, and direct
    /// results when asked and ready.
    fn started(
        &self,
        guid: Vec<u8>,
        op: &Operation,
        direct: Option<&TSparkGetDirectResults>,
    ) -> TExecuteStatementResp {
        let mut resp = TExecuteStatementResp {
            status: ok(),
            operation_handle: Some(op_handle(guid, op.kind, true)),
            direct_results: None,
        };
        if let Some(direct) = direct {
            if self.protocol.block_on(op.wait(DIRECT_WAIT)) {
                let status = self.status_of(op);
                let finished = status.operation_state == Some(TOperationState::FINISHED_STATE);
                resp.direct_results = Some(TSparkDirectResults {
                    operation_status: Some(status),
                    result_set_metadata: finished.then(|| self.metadata_of(op)),
                    result_set: finished
                        .then(|| self.fetch(op, direct.max_rows.unwrap_or(100_000), false)),
                    close_operation: None,
                });
            }
        }
        resp
    }

    fn new_operation(
        &self,
        session: &[u8],
        kind: TOperationType,
        lz4: bool,
    ) -> (Vec<u8>, Arc<Operation>) {
        let cancel = self.protocol.warehouses.shutdown.child_token();
        let arrow = self
            .protocol
            .sessions
            .lock()
            .ok()
            .and_then(|s| s.get(session).map(|s| s.arrow))
            .unwrap_or(true);
        let op = Operation::new(session, kind.0, (arrow, lz4), cancel);
        let guid = guid();
        if let Ok(mut ops) = self.protocol.operations.lock() {
            ops.insert(guid.clone(), op.clone());
        }
        (guid, op)
    }

    /// A metadata call: its rows from the catalog, at once.
    fn metadata_call(
        &self,
        session: Option<&TSessionHandle>,
        kind: TOperationType,
        direct: Option<&TSparkGetDirectResults>,
        build: impl FnOnce(&SqlProtocol) -> Result<Framed, String>,
    ) -> thrift::Result<TExecuteStatementResp> {
        let Some(session) = self.session_guid(session) else {
            return Ok(TExecuteStatementResp {
                status: invalid_handle("session"),
                ..Default::default()
            });
        };
        let (guid, op) = self.new_operation(&session, kind, false);
        op.end(build(&self.protocol));
        Ok(self.started(guid, &op, direct))
    }
}

impl TCLIServiceSyncHandler for Handler {
    fn handle_open_session(&self, req: TOpenSessionReq) -> thrift::Result<TOpenSessionResp> {
        let asked = req
            .client_protocol_i64
            .map(|v| v as i32)
            .or(req.client_protocol)
            .unwrap_or(NEWEST);
        let version = asked.min(NEWEST);
        let namespace = req.initial_namespace.clone().unwrap_or_default();
        if let Some(c) = namespace.catalog_name.as_deref().filter(|c| !c.is_empty()) {
            if self.protocol.catalog.get_catalog(c).is_err() {
                return Ok(TOpenSessionResp {
                    status: failed(format!(
                        "[NO_SUCH_CATALOG_EXCEPTION] Catalog '{c}' was not found."
                    )),
                    ..Default::default()
                });
            }
        }
        let guid = guid();
        if let Ok(mut sessions) = self.protocol.sessions.lock() {
            sessions.insert(
                guid.clone(),
                SqlSession {
                    user: self.caller.user.clone(),
                    target: self.caller.target.clone(),
                    catalog: namespace.catalog_name.clone(),
                    schema: namespace.schema_name.clone(),
                    spark: HashMap::new(),
                    arrow: true,
                },
            );
        }
        Ok(TOpenSessionResp {
            status: ok(),
            server_protocol_version: Some(TProtocolVersion(version)),
            session_handle: Some(TSessionHandle {
                session_id: Some(THandleIdentifier {
                    guid: Some(guid),
                    secret: Some(self::guid()),
                }),
                server_protocol_version: Some(version),
            }),
            configuration: Some(req.configuration.clone().unwrap_or_default()),
            initial_namespace: Some(namespace),
            can_use_multiple_catalogs: Some(true),
        })
    }

    fn handle_close_session(&self, req: TCloseSessionReq) -> thrift::Result<TCloseSessionResp> {
        let status = match self.session_guid(req.session_handle.as_ref()) {
            Some(guid) => {
                self.protocol.close_session(&guid);
                ok()
            }
            None => invalid_handle("session"),
        };
        Ok(TCloseSessionResp { status })
    }

    fn handle_get_info(&self, req: TGetInfoReq) -> thrift::Result<TGetInfoResp> {
        if self.session_guid(req.session_handle.as_ref()).is_none() {
            return Ok(TGetInfoResp {
                status: invalid_handle("session"),
                info_value: None,
            });
        }
        let text = match req.info_type.unwrap_or(0) {
            13 => "Kiln".to_string(),
            17 => "Spark SQL".to_string(),
            18 => env!("CARGO_PKG_VERSION").to_string(),
            47 => self.caller.user.clone(),
            29 => "`".to_string(),
            _ => String::new(),
        };
        Ok(TGetInfoResp {
            status: ok(),
            info_value: Some(TGetInfoValue {
                string_value: Some(text),
                ..Default::default()
            }),
        })
    }

    fn handle_execute_statement(
        &self,
        req: TExecuteStatementReq,
    ) -> thrift::Result<TExecuteStatementResp> {
        let Some(session) = self.session_guid(req.session_handle.as_ref()) else {
            return Ok(TExecuteStatementResp {
                status: invalid_handle("session"),
                ..Default::default()
            });
        };
        // a client without Arrow gets column-based results (its metadata calls too)
        if let Ok(mut sessions) = self.protocol.sessions.lock() {
            if let Some(s) = sessions.get_mut(&session) {
                s.arrow = req.can_read_arrow_result != Some(false);
            }
        }
        let statement = req.statement.clone().unwrap_or_default();
        let (named, positional) = match parameters(req.parameters.as_deref().unwrap_or_default()) {
            Ok(p) => p,
            Err(message) => {
                return Ok(TExecuteStatementResp {
                    status: failed(message),
                    ..Default::default()
                })
            }
        };
        let lz4 = req.can_decompress_l_z4_result == Some(true);
        let (guid, op) = self.new_operation(&session, TOperationType::EXECUTE_STATEMENT, lz4);
        let record = match &self.caller.target {
            Target::Warehouse(id) => {
                let hex: String = guid.iter().map(|b| format!("{b:02x}")).collect();
                let q = QueryRecord::new(&hex, id, &self.caller.user, &statement);
                let _ = self.protocol.history.started(q);
                Some(hex)
            }
            Target::Cluster(_) => None,
        };
        let (protocol, task_op) = (self.protocol.clone(), op.clone());
        self.protocol.spawn(async move {
            let outcome = operations::execute(
                protocol.clone(),
                task_op.clone(),
                statement,
                named,
                positional,
            )
            .await;
            let rows = outcome.as_ref().map(|f| f.rows()).ok();
            let error = outcome.as_ref().err().cloned();
            task_op.end(outcome);
            if let Some(id) = record {
                protocol.history.ended_protocol(
                    &id,
                    task_op.cancel.is_cancelled(),
                    rows,
                    error,
                    now_ms(),
                );
            }
        });
        if req.run_async == Some(false) {
            self.protocol
                .block_on(op.wait(Duration::from_secs(24 * 3600)));
        }
        Ok(self.started(guid, &op, req.get_direct_results.as_ref()))
    }

    fn handle_get_type_info(&self, req: TGetTypeInfoReq) -> thrift::Result<TExecuteStatementResp> {
        self.metadata_call(
            req.session_handle.as_ref(),
            TOperationType::GET_TYPE_INFO,
            req.get_direct_results.as_ref(),
            |_| metadata::type_info(),
        )
    }

    fn handle_get_catalogs(&self, req: TGetCatalogsReq) -> thrift::Result<TExecuteStatementResp> {
        self.metadata_call(
            req.session_handle.as_ref(),
            TOperationType::GET_CATALOGS,
            req.get_direct_results.as_ref(),
            |p| metadata::catalogs(&p.catalog),
        )
    }

    fn handle_get_schemas(&self, req: TGetSchemasReq) -> thrift::Result<TExecuteStatementResp> {
        let (c, s) = (req.catalog_name.clone(), req.schema_name.clone());
        self.metadata_call(
            req.session_handle.as_ref(),
            TOperationType::GET_SCHEMAS,
            req.get_direct_results.as_ref(),
            move |p| metadata::schemas(&p.catalog, c.as_deref(), s.as_deref()),
        )
    }

    fn handle_get_tables(&self, req: TGetTablesReq) -> thrift::Result<TExecuteStatementResp> {
        let f = metadata::TableFilter {
            catalog: req.catalog_name.clone(),
            schema: req.schema_name.clone(),
            table: req.table_name.clone(),
            types: req.table_types.clone().unwrap_or_default(),
        };
        self.metadata_call(
            req.session_handle.as_ref(),
            TOperationType::GET_TABLES,
            req.get_direct_results.as_ref(),
            move |p| metadata::tables(&p.catalog, &f),
        )
    }

    fn handle_get_table_types(
        &self,
        req: TGetTableTypesReq,
    ) -> thrift::Result<TExecuteStatementResp> {
        self.metadata_call(
            req.session_handle.as_ref(),
            TOperationType::GET_TABLE_TYPES,
            req.get_direct_results.as_ref(),
            |_| metadata::table_types(),
        )
    }

    fn handle_get_columns(&self, req: TGetColumnsReq) -> thrift::Result<TExecuteStatementResp> {
        let f = metadata::TableFilter {
            catalog: req.catalog_name.clone(),
            schema: req.schema_name.clone(),
            table: req.table_name.clone(),
            types: Vec::new(),
        };
        let column = req.column_name.clone();
        self.metadata_call(
            req.session_handle.as_ref(),
            TOperationType::GET_COLUMNS,
            req.get_direct_results.as_ref(),
            move |p| metadata::columns(&p.catalog, &f, column.as_deref()),
        )
    }

    fn handle_get_functions(&self, req: TGetFunctionsReq) -> thrift::Result<TExecuteStatementResp> {
        self.metadata_call(
            req.session_handle.as_ref(),
            TOperationType::GET_FUNCTIONS,
            req.get_direct_results.as_ref(),
            |_| metadata::functions(),
        )
    }

    fn handle_get_primary_keys(
        &self,
        req: TGetPrimaryKeysReq,
    ) -> thrift::Result<TExecuteStatementResp> {
        self.metadata_call(
            req.session_handle.as_ref(),
            TOperationType::UNKNOWN,
            req.get_direct_results.as_ref(),
            |_| metadata::primary_keys(),
        )
    }

    fn handle_get_cross_reference(
        &self,
        req: TGetCrossReferenceReq,
    ) -> thrift::Result<TExecuteStatementResp> {
        self.metadata_call(
            req.session_handle.as_ref(),
            TOperationType::UNKNOWN,
            req.get_direct_results.as_ref(),
            |_| metadata::cross_reference(),
        )
    }

    fn handle_get_operation_status(
        &self,
        req: TGetOperationStatusReq,
    ) -> thrift::Result<TGetOperationStatusResp> {
        Ok(match self.operation(req.operation_handle.as_ref()) {
            Some((_, op)) => self.status_of(&op),
            None => TGetOperationStatusResp {
                status: invalid_handle("operation"),
                ..Default::default()
            },
        })
    }

    fn handle_cancel_operation(
        &self,
        req: TCancelOperationReq,
    ) -> thrift::Result<TCancelOperationResp> {
        let status = match self.operation(req.operation_handle.as_ref()) {
            Some((_, op)) => {
                op.cancel.cancel();
                ok()
            }
            None => invalid_handle("operation"),
        };
        Ok(TCancelOperationResp { status })
    }

    fn handle_close_operation(
        &self,
        req: TCloseOperationReq,
    ) -> thrift::Result<TCloseOperationResp> {
        let status = match self.operation(req.operation_handle.as_ref()) {
            Some((guid, op)) => {
                op.cancel.cancel();
                if let Ok(mut ops) = self.protocol.operations.lock() {
                    ops.remove(&guid);
                }
                ok()
            }
            None => invalid_handle("operation"),
        };
        Ok(TCloseOperationResp { status })
    }

    fn handle_get_result_set_metadata(
        &self,
        req: TGetResultSetMetadataReq,
    ) -> thrift::Result<TGetResultSetMetadataResp> {
        Ok(match self.operation(req.operation_handle.as_ref()) {
            Some((_, op)) => {
                self.protocol.block_on(op.wait(FETCH_WAIT));
                self.metadata_of(&op)
            }
            None => TGetResultSetMetadataResp {
                status: invalid_handle("operation"),
                ..Default::default()
            },
        })
    }

    fn handle_fetch_results(&self, req: TFetchResultsReq) -> thrift::Result<TFetchResultsResp> {
        Ok(match self.operation(req.operation_handle.as_ref()) {
            Some((_, op)) => {
                self.protocol.block_on(op.wait(FETCH_WAIT));
                self.fetch(
                    &op,
                    req.max_rows.unwrap_or(100_000),
                    req.include_result_set_metadata == Some(true),
                )
            }
            None => TFetchResultsResp {
                status: invalid_handle("operation"),
                ..Default::default()
            },
        })
    }
}
