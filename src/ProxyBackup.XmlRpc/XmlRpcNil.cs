namespace ProxyBackup.XmlRpc;

/// <summary>
/// Values travel as plain .NET objects: int (i4/int), long (i8), bool, string, double,
/// DateTime (dateTime.iso8601), byte[] (base64), IReadOnlyDictionary&lt;string, object?&gt; (struct),
/// IReadOnlyList&lt;object?&gt; (array) and null (nil). This type names that mapping in one place.
/// </summary>
public static class XmlRpcTypes
{
    public static string Describe(object? value) => value switch
    {
        null => "nil",
        int => "int",
        long => "i8",
        bool => "boolean",
        string => "string",
        double => "double",
        DateTime => "dateTime.iso8601",
        byte[] => "base64",
        IReadOnlyDictionary<string, object?> => "struct",
        IReadOnlyList<object?> => "array",
        _ => value.GetType().Name,
    };
}
