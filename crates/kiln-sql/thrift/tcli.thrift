// The part of the Databricks SQL protocol (Hive/Spark's TCLIService with the
// Databricks extension fields, ids from 1281 = 0x501 up) that Kiln serves.
// Written for Kiln from the protocol's published field numbers; fields Kiln
// neither reads nor writes are left out (Thrift skips what it does not know).
// Every field is optional so a client's omissions never fail a read.
//
// Regenerate with Debian's thrift-compiler 0.17 (matching the `thrift` crate):
//   thrift --gen rs -out crates/kiln-sql/src/protocol crates/kiln-sql/thrift/tcli.thrift
// then keep the generated file's name `tcli.rs`.

namespace rs tcli

enum TProtocolVersion {
  HIVE_CLI_SERVICE_PROTOCOL_V1 = 0,
  HIVE_CLI_SERVICE_PROTOCOL_V10 = 9,
  SPARK_CLI_SERVICE_PROTOCOL_V1 = 0xA501,
  SPARK_CLI_SERVICE_PROTOCOL_V2 = 0xA502,
  SPARK_CLI_SERVICE_PROTOCOL_V3 = 0xA503,
  SPARK_CLI_SERVICE_PROTOCOL_V4 = 0xA504,
  SPARK_CLI_SERVICE_PROTOCOL_V5 = 0xA505,
  SPARK_CLI_SERVICE_PROTOCOL_V6 = 0xA506,
  SPARK_CLI_SERVICE_PROTOCOL_V7 = 0xA507,
  SPARK_CLI_SERVICE_PROTOCOL_V8 = 0xA508,
  SPARK_CLI_SERVICE_PROTOCOL_V9 = 0xA509
}

enum TTypeId {
  BOOLEAN_TYPE = 0, TINYINT_TYPE = 1, SMALLINT_TYPE = 2, INT_TYPE = 3, BIGINT_TYPE = 4,
  FLOAT_TYPE = 5, DOUBLE_TYPE = 6, STRING_TYPE = 7, TIMESTAMP_TYPE = 8, BINARY_TYPE = 9,
  ARRAY_TYPE = 10, MAP_TYPE = 11, STRUCT_TYPE = 12, UNION_TYPE = 13, USER_DEFINED_TYPE = 14,
  DECIMAL_TYPE = 15, NULL_TYPE = 16, DATE_TYPE = 17, VARCHAR_TYPE = 18, CHAR_TYPE = 19,
  INTERVAL_YEAR_MONTH_TYPE = 20, INTERVAL_DAY_TIME_TYPE = 21
}

enum TStatusCode {
  SUCCESS_STATUS = 0, SUCCESS_WITH_INFO_STATUS = 1, STILL_EXECUTING_STATUS = 2,
  ERROR_STATUS = 3, INVALID_HANDLE_STATUS = 4
}

enum TOperationState {
  INITIALIZED_STATE = 0, RUNNING_STATE = 1, FINISHED_STATE = 2, CANCELED_STATE = 3,
  CLOSED_STATE = 4, ERROR_STATE = 5, UKNOWN_STATE = 6, PENDING_STATE = 7, TIMEDOUT_STATE = 8
}

enum TOperationType {
  EXECUTE_STATEMENT = 0, GET_TYPE_INFO = 1, GET_CATALOGS = 2, GET_SCHEMAS = 3, GET_TABLES = 4,
  GET_TABLE_TYPES = 5, GET_COLUMNS = 6, GET_FUNCTIONS = 7, UNKNOWN = 8
}

enum TSparkRowSetType {
  ARROW_BASED_SET = 0, COLUMN_BASED_SET = 1, ROW_BASED_SET = 2, URL_BASED_SET = 3
}

struct TTypeQualifierValue {
  1: optional i32 i32Value
  2: optional string stringValue
}

struct TTypeQualifiers {
  1: optional map<string, TTypeQualifierValue> qualifiers
}

struct TPrimitiveTypeEntry {
  1: optional TTypeId type
  2: optional TTypeQualifiers typeQualifiers
}

struct TTypeEntry {
  1: optional TPrimitiveTypeEntry primitiveEntry
}

struct TTypeDesc {
  1: optional list<TTypeEntry> types
}

struct TColumnDesc {
  1: optional string columnName
  2: optional TTypeDesc typeDesc
  3: optional i32 position
  4: optional string comment
}

struct TTableSchema {
  1: optional list<TColumnDesc> columns
}

struct TStringValue {
  1: optional string value
}

struct TColumnValue {
  7: optional TStringValue stringVal
}

struct TRow {
  1: optional list<TColumnValue> colVals
}

// Column-based results (clients without Arrow): values, and a bitmap of nulls
// (bit i of byte i/8, lowest bit first).
struct TBoolColumn {
  1: optional list<bool> values
  2: optional binary nulls
}

struct TByteColumn {
  1: optional list<i8> values
  2: optional binary nulls
}

struct TI16Column {
  1: optional list<i16> values
  2: optional binary nulls
}

struct TI32Column {
  1: optional list<i32> values
  2: optional binary nulls
}

struct TI64Column {
  1: optional list<i64> values
  2: optional binary nulls
}

struct TDoubleColumn {
  1: optional list<double> values
  2: optional binary nulls
}

struct TStringColumn {
  1: optional list<string> values
  2: optional binary nulls
}

struct TBinaryColumn {
  1: optional list<binary> values
  2: optional binary nulls
}

union TColumn {
  1: TBoolColumn boolVal
  2: TByteColumn byteVal
  3: TI16Column i16Val
  4: TI32Column i32Val
  5: TI64Column i64Val
  6: TDoubleColumn doubleVal
  7: TStringColumn stringVal
  8: TBinaryColumn binaryVal
}

struct TSparkArrowBatch {
  1: optional binary batch
  2: optional i64 rowCount
}

struct TRowSet {
  1: optional i64 startRowOffset
  2: optional list<TRow> rows
  3: optional list<TColumn> columns
  5: optional i32 columnCount
  0x501: optional list<TSparkArrowBatch> arrowBatches
}

struct TStatus {
  1: optional TStatusCode statusCode
  2: optional list<string> infoMessages
  3: optional string sqlState
  4: optional i32 errorCode
  5: optional string errorMessage
  6: optional string displayMessage
}

struct TNamespace {
  1: optional string catalogName
  2: optional string schemaName
}

struct THandleIdentifier {
  1: optional binary guid
  2: optional binary secret
}

struct TSessionHandle {
  1: optional THandleIdentifier sessionId
  0xD01: optional i32 serverProtocolVersion
}

struct TOperationHandle {
  1: optional THandleIdentifier operationId
  2: optional TOperationType operationType
  3: optional bool hasResultSet
  4: optional double modifiedRowCount
}

struct TGetInfoValue {
  1: optional string stringValue
  2: optional i16 smallIntValue
  3: optional i32 integerBitmask
  4: optional i32 integerFlag
  5: optional i32 binaryValue
  6: optional i64 lenValue
}

struct TOpenSessionReq {
  1: optional i32 client_protocol
  2: optional string username
  4: optional map<string, string> configuration
  0x502: optional i64 client_protocol_i64
  0x504: optional TNamespace initialNamespace
  0x505: optional bool canUseMultipleCatalogs
}

struct TOpenSessionResp {
  1: optional TStatus status
  2: optional TProtocolVersion serverProtocolVersion
  3: optional TSessionHandle sessionHandle
  4: optional map<string, string> configuration
  0x504: optional TNamespace initialNamespace
  0x505: optional bool canUseMultipleCatalogs
}

struct TCloseSessionReq {
  1: optional TSessionHandle sessionHandle
}

struct TCloseSessionResp {
  1: optional TStatus status
}

struct TGetInfoReq {
  1: optional TSessionHandle sessionHandle
  2: optional i32 infoType
}

struct TGetInfoResp {
  1: optional TStatus status
  2: optional TGetInfoValue infoValue
}

struct TSparkGetDirectResults {
  1: optional i64 maxRows
  2: optional i64 maxBytes
}

struct TSparkArrowTypes {
  1: optional bool timestampAsArrow
  2: optional bool decimalAsArrow
  3: optional bool complexTypesAsArrow
  4: optional bool intervalTypesAsArrow
}

struct TSparkParameterValue {
  1: optional string stringValue
  2: optional double doubleValue
  3: optional bool booleanValue
}

struct TSparkParameter {
  1: optional i32 ordinal
  2: optional string name
  3: optional string type
  4: optional TSparkParameterValue value
}

struct TExecuteStatementReq {
  1: optional TSessionHandle sessionHandle
  2: optional string statement
  3: optional map<string, string> confOverlay
  4: optional bool runAsync
  5: optional i64 queryTimeout
  0x501: optional TSparkGetDirectResults getDirectResults
  0x502: optional bool canReadArrowResult
  0x503: optional bool canDownloadResult
  0x504: optional bool canDecompressLZ4Result
  0x506: optional TSparkArrowTypes useArrowNativeTypes
  0x507: optional i64 resultRowLimit
  0x508: optional list<TSparkParameter> parameters
}

struct TGetOperationStatusReq {
  1: optional TOperationHandle operationHandle
  2: optional bool getProgressUpdate
}

struct TGetOperationStatusResp {
  1: optional TStatus status
  2: optional TOperationState operationState
  3: optional string sqlState
  4: optional i32 errorCode
  5: optional string errorMessage
  7: optional i64 operationStarted
  8: optional i64 operationCompleted
  9: optional bool hasResultSet
  11: optional i64 numModifiedRows
  0x501: optional string displayMessage
  0x502: optional string diagnosticInfo
}

struct TGetResultSetMetadataReq {
  1: optional TOperationHandle operationHandle
}

struct TGetResultSetMetadataResp {
  1: optional TStatus status
  2: optional TTableSchema schema
  0x501: optional TSparkRowSetType resultFormat
  0x502: optional bool lz4Compressed
  0x503: optional binary arrowSchema
  0x507: optional bool isStagingOperation
}

struct TFetchResultsReq {
  1: optional TOperationHandle operationHandle
  2: optional i32 orientation
  3: optional i64 maxRows
  4: optional i16 fetchType
  0x501: optional i64 maxBytes
  0x502: optional i64 startRowOffset
  0x503: optional bool includeResultSetMetadata
}

struct TFetchResultsResp {
  1: optional TStatus status
  2: optional bool hasMoreRows
  3: optional TRowSet results
  0x501: optional TGetResultSetMetadataResp resultSetMetadata
}

struct TCloseOperationReq {
  1: optional TOperationHandle operationHandle
}

struct TCloseOperationResp {
  1: optional TStatus status
}

struct TCancelOperationReq {
  1: optional TOperationHandle operationHandle
}

struct TCancelOperationResp {
  1: optional TStatus status
}

struct TSparkDirectResults {
  1: optional TGetOperationStatusResp operationStatus
  2: optional TGetResultSetMetadataResp resultSetMetadata
  3: optional TFetchResultsResp resultSet
  4: optional TCloseOperationResp closeOperation
}

struct TExecuteStatementResp {
  1: optional TStatus status
  2: optional TOperationHandle operationHandle
  0x501: optional TSparkDirectResults directResults
}

// The metadata calls: a session, their filters, and direct results.
struct TGetTypeInfoReq {
  1: optional TSessionHandle sessionHandle
  0x501: optional TSparkGetDirectResults getDirectResults
}

struct TGetCatalogsReq {
  1: optional TSessionHandle sessionHandle
  0x501: optional TSparkGetDirectResults getDirectResults
}

struct TGetSchemasReq {
  1: optional TSessionHandle sessionHandle
  2: optional string catalogName
  3: optional string schemaName
  0x501: optional TSparkGetDirectResults getDirectResults
}

struct TGetTablesReq {
  1: optional TSessionHandle sessionHandle
  2: optional string catalogName
  3: optional string schemaName
  4: optional string tableName
  5: optional list<string> tableTypes
  0x501: optional TSparkGetDirectResults getDirectResults
}

struct TGetTableTypesReq {
  1: optional TSessionHandle sessionHandle
  0x501: optional TSparkGetDirectResults getDirectResults
}

struct TGetColumnsReq {
  1: optional TSessionHandle sessionHandle
  2: optional string catalogName
  3: optional string schemaName
  4: optional string tableName
  5: optional string columnName
  0x501: optional TSparkGetDirectResults getDirectResults
}

struct TGetFunctionsReq {
  1: optional TSessionHandle sessionHandle
  2: optional string catalogName
  3: optional string schemaName
  4: optional string functionName
  0x501: optional TSparkGetDirectResults getDirectResults
}

struct TGetPrimaryKeysReq {
  1: optional TSessionHandle sessionHandle
  2: optional string catalogName
  3: optional string schemaName
  4: optional string tableName
  0x501: optional TSparkGetDirectResults getDirectResults
}

struct TGetCrossReferenceReq {
  1: optional TSessionHandle sessionHandle
  2: optional string parentCatalogName
  3: optional string parentSchemaName
  4: optional string parentTableName
  5: optional string foreignCatalogName
  6: optional string foreignSchemaName
  7: optional string foreignTableName
  0x501: optional TSparkGetDirectResults getDirectResults
}

service TCLIService {
  TOpenSessionResp OpenSession(1: TOpenSessionReq req);
  TCloseSessionResp CloseSession(1: TCloseSessionReq req);
  TGetInfoResp GetInfo(1: TGetInfoReq req);
  TExecuteStatementResp ExecuteStatement(1: TExecuteStatementReq req);
  TExecuteStatementResp GetTypeInfo(1: TGetTypeInfoReq req);
  TExecuteStatementResp GetCatalogs(1: TGetCatalogsReq req);
  TExecuteStatementResp GetSchemas(1: TGetSchemasReq req);
  TExecuteStatementResp GetTables(1: TGetTablesReq req);
  TExecuteStatementResp GetTableTypes(1: TGetTableTypesReq req);
  TExecuteStatementResp GetColumns(1: TGetColumnsReq req);
  TExecuteStatementResp GetFunctions(1: TGetFunctionsReq req);
  TExecuteStatementResp GetPrimaryKeys(1: TGetPrimaryKeysReq req);
  TExecuteStatementResp GetCrossReference(1: TGetCrossReferenceReq req);
  TGetOperationStatusResp GetOperationStatus(1: TGetOperationStatusReq req);
  TCancelOperationResp CancelOperation(1: TCancelOperationReq req);
  TCloseOperationResp CloseOperation(1: TCloseOperationReq req);
  TGetResultSetMetadataResp GetResultSetMetadata(1: TGetResultSetMetadataReq req);
  TFetchResultsResp FetchResults(1: TFetchResultsReq req);
}
