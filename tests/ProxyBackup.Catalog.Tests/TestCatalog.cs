using System.Data.Common;
using Microsoft.Data.Sqlite;
using Npgsql;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Catalog.Tests;

/// <summary>
/// A fresh catalog on one engine: a SQLite file in a temporary folder, or a database of its own on
/// the test process's PostgreSQL server. <see cref="Sql"/> writes what another proxy's process would
/// have written (owners, leases), in SQL both engines read.
/// </summary>
internal sealed class TestCatalog : IDisposable
{
    private readonly TempDirectory? _dir;
    private readonly string _where;
    private readonly List<SqlCatalog> _opened = [];

    public TestCatalog(string engine)
    {
        Engine = engine;
        if (engine == CatalogEngines.Sqlite)
        {
            _dir = new TempDirectory("pb-catalog");
            _where = _dir.Combine("catalog.db");
        }
        else _where = PostgresTestServer.NewDatabase();
    }

    public string Engine { get; }

    /// <summary>A catalog object on this database, as one process (or one proxy) opens it.</summary>
    public SqlCatalog Open(TimeProvider? time = null)
    {
        var catalog = Engine == CatalogEngines.Sqlite ? new SqlCatalog(_where, time) : SqlCatalog.Postgres(_where, time: time);
        lock (_opened) _opened.Add(catalog);
        return catalog;
    }

    public void Sql(string sql, params (string Name, object? Value)[] parameters)
    {
        using var c = Connect();
        using var cmd = Command(c, sql, parameters);
        cmd.ExecuteNonQuery();
    }

    public object? Scalar(string sql, params (string Name, object? Value)[] parameters)
    {
        using var c = Connect();
        using var cmd = Command(c, sql, parameters);
        return cmd.ExecuteScalar();
    }

    private DbConnection Connect()
    {
        DbConnection c = Engine == CatalogEngines.Sqlite ? new SqliteConnection($"Data Source={_where}") : new NpgsqlConnection(_where);
        c.Open();
        return c;
    }

    private static DbCommand Command(DbConnection c, string sql, (string Name, object? Value)[] parameters)
    {
        var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            var p = cmd.CreateParameter();
            p.ParameterName = name;
            p.Value = value ?? DBNull.Value;
            cmd.Parameters.Add(p);
        }
        return cmd;
    }

    public void Dispose()
    {
        lock (_opened) foreach (var c in _opened) c.Dispose();
        _dir?.Dispose();
    }
}
