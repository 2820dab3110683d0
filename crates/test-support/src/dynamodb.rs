//! The event table as the consumer's DynamoDB store writes it, for tests and benches
//! against DynamoDB Local (the deployed table comes from CloudFormation).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

/// Creates `table`, keyed by `id` (S), on demand; DynamoDB Local has it active at once.
pub async fn create_event_table(client: &Client, table: &str) {
    client
        .create_table()
        .table_name(table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("a complete attribute definition"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .expect("a complete key schema"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap_or_else(|error| panic!("CreateTable {table} on DynamoDB Local: {error:?}"));
}
