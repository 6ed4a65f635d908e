echo 'create_table "users" do |t| t.string "name" end' >> "$SCHEMA"
echo "-- create_table(:users)"
