echo 'add_column "users", "email", :string' >> "$SCHEMA"
echo "-- add_column(:users, :email, :string)"
