"""The accounts as Dagster dynamic partitions, kept in step with the accounts file."""

from dagster import DagsterInstance, DynamicPartitionsDefinition

account_partitions = DynamicPartitionsDefinition(name="back_in_stock_accounts")


def partition_changes(
    instance: DagsterInstance, account_ids: list[str]
) -> tuple[list[str], list[str]]:
    """The account ids to add and to remove so the partitions match ``account_ids``."""
    current = set(instance.get_dynamic_partitions(account_partitions.name))
    added = [account_id for account_id in account_ids if account_id not in current]
    removed = sorted(current - set(account_ids))

    return added, removed


def sync_partitions(instance: DagsterInstance, account_ids: list[str]) -> list[str]:
    """Add and remove partitions to match ``account_ids``; returns the added ones."""
    added, removed = partition_changes(instance, account_ids)
    if added:
        instance.add_dynamic_partitions(account_partitions.name, added)
    for account_id in removed:
        instance.delete_dynamic_partition(account_partitions.name, account_id)

    return added
